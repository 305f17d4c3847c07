//! Import layout (issue 19): no import cycle between the crate's top-level
//! modules, leaves that stay leaves, adapters that never import each other;
//! inside an adapter no import cycle between its files, none between its
//! top-level folders, and the planes kept apart (a session never imports
//! the control plane, nor the reverse; the routing view imports neither).
//!
//! The graph is read from the source: every `use` tree and every inline
//! `super::…`, `self::…` or `crate::<adapter>::…` path outside comments and
//! `#[cfg(test)]` code, resolved to the longest module path that is a file.
//! The adapter's own `mod.rs` is left out: it is the composition root,
//! declares every module, holds what all of them share and starts them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Folder pairs `(from, to)` of an adapter that must not import each other.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("kafka", "session", "control"),
    ("kafka", "control", "session"),
    ("kafka", "splice", "session"),
    ("kafka", "splice", "control"),
];

/// Top-level modules that import no other module of the crate.
const LEAVES: &[&str] = &["pattern", "metrics", "telemetry", "credentials"];
/// The core: imports leaves only.
const CORE: &str = "migration";
/// The protocol adapters, which never import each other.
const ADAPTERS: &[&str] = &["redis", "kafka", "rocketmq"];

/// A module path inside one adapter (`[]` is the adapter's root).
type Module = Vec<String>;

/// Each file's module path and source, read from `src/<adapter>`.
fn read_adapter(adapter: &str) -> Vec<(Module, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(adapter);
    assert!(root.is_dir(), "no adapter at {}", root.display());
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("readable adapter folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).expect("under the root");
            let mut module: Module = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            files.push((module, fs::read_to_string(&path).expect("readable file")));
        }
    }
    files.sort();
    files
}

/// The source without comments and without the code after the first
/// top-level `#[cfg(test)]` (test modules come last in this codebase).
fn production_code(source: &str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.find("//").map_or(line, |i| &line[..i]);
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every path a `use` tree names (`a::{b, c::{d as e, self}}` → `a::b`,
/// `a::c::d`, `a::c`).
fn expand_use(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let join = |p: &str, s: &str| {
        if p.is_empty() {
            s.to_owned()
        } else {
            format!("{p}::{s}")
        }
    };
    let Some(open) = tree.find('{') else {
        let name = tree.split(" as ").next().unwrap_or(tree).trim();
        match name {
            "" => {}
            "self" | "*" => out.push(prefix.to_owned()),
            _ => out.push(join(prefix, name)),
        }
        return;
    };
    let head = tree[..open].trim().trim_end_matches("::");
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let prefix = join(prefix, head);
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_use(&prefix, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    expand_use(&prefix, &inner[start..], out);
}

/// The paths a file names: its `use` trees and inline relative paths.
fn named_paths(code: &str, adapter: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        let trimmed = line.trim_start();
        let after_vis = trimmed
            .strip_prefix("pub")
            .map_or(trimmed, |r| r.split_once("use ").map_or("", |(_, r)| r));
        let statement = if after_vis.len() < trimmed.len() {
            Some(after_vis)
        } else {
            trimmed.strip_prefix("use ")
        };
        if statement.is_some() {
            let start = at + line.len() - statement.map_or(0, str::len);
            let end = code[start..].find(';').map_or(code.len(), |n| start + n);
            expand_use("", &code[start..end], &mut paths);
        }
    }
    let starts = ["super::", "self::", &format!("crate::{adapter}::")];
    for start in starts {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let before = code[..at].chars().next_back();
            let path_end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |n| at + n);
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                paths.push(code[at..path_end].trim_end_matches(':').to_owned());
            }
            from = path_end.max(at + start.len());
        }
    }
    paths
}

/// The module of `modules` a path from `file` lands in (the longest
/// prefix that is a module), or `None` when it leaves the adapter.
fn resolve(path: &str, file: &Module, adapter: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut segments = path.split("::").peekable();
    let mut at: Module = match *segments.peek()? {
        "crate" => {
            segments.next();
            if segments.next()? != adapter {
                return None;
            }
            Vec::new()
        }
        "super" | "self" => file.clone(),
        _ => return None,
    };
    while let Some(&s) = segments.peek() {
        match s {
            "super" => {
                at.pop()?;
            }
            "self" => {}
            _ => break,
        }
        segments.next();
    }
    for s in segments {
        let mut next = at.clone();
        next.push(s.to_owned());
        if !modules.contains(&next) {
            break;
        }
        at = next;
    }
    Some(at)
}

/// File → files it imports, the adapter's root left out.
fn graph(adapter: &str, files: &[(Module, String)]) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges = BTreeMap::new();
    for (module, source) in files {
        if module.is_empty() {
            continue;
        }
        let to: BTreeSet<Module> = named_paths(&production_code(source), adapter)
            .iter()
            .filter_map(|p| resolve(p, module, adapter, &modules))
            .filter(|m| !m.is_empty() && m != module)
            .collect();
        edges.insert(module.clone(), to);
    }
    edges
}

/// The top-level folder (or root file) a module belongs to.
fn unit(module: &Module) -> Module {
    module.iter().take(1).cloned().collect()
}

fn folders(edges: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, to) in edges {
        let entry = out.entry(unit(from)).or_default();
        entry.extend(to.iter().map(unit).filter(|u| *u != unit(from)));
    }
    out
}

/// Every strongly connected set of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut set = Vec::new();
                while let Some(w) = self.stack.pop() {
                    set.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if set.len() > 1 {
                    set.sort();
                    self.found.push(set);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn show(sets: &[Vec<Module>]) -> String {
    let mut out = String::new();
    for set in sets {
        let names: Vec<String> = set.iter().map(|m| m.join("/")).collect();
        let _ = writeln!(out, "  {} files: {}", names.len(), names.join(", "));
    }
    out
}

/// Cycles between files and between top-level folders of `adapter`.
fn adapter_cycles(adapter: &str) -> (Vec<Vec<Module>>, Vec<Vec<Module>>) {
    let edges = graph(adapter, &read_adapter(adapter));
    assert!(
        edges.len() > 1,
        "{adapter}: no module read (is the parser broken?)"
    );
    (cycles(&edges), cycles(&folders(&edges)))
}

#[test]
fn acyclic_adapters_have_no_import_cycle_between_files_or_folders() {
    for adapter in ADAPTERS {
        let (files, folders) = adapter_cycles(adapter);
        assert!(
            files.is_empty() && folders.is_empty(),
            "import cycles in src/{adapter}:\n between files:\n{}\n between folders:\n{}",
            show(&files),
            show(&folders)
        );
    }
}

#[test]
fn planes_import_each_other_only_through_the_shared_leaves() {
    let mut crossings = Vec::new();
    for (adapter, from, to) in FORBIDDEN {
        let edges = graph(adapter, &read_adapter(adapter));
        for (file, imports) in &edges {
            for import in imports {
                if file.first().is_some_and(|f| f == from)
                    && import.first().is_some_and(|t| t == to)
                {
                    crossings.push(format!(
                        "{adapter}: {} → {}",
                        file.join("/"),
                        import.join("/")
                    ));
                }
            }
        }
    }
    assert!(
        crossings.is_empty(),
        "forbidden imports:\n{}",
        crossings.join("\n")
    );
}

/// Top-level module → the top-level modules its production code names
/// (`crate::x…` in `use` trees and inline paths); `lib.rs` and `main.rs`
/// (the roots) left out.
fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("readable src") {
        let path = entry.expect("readable entry").path();
        let name = path
            .file_stem()
            .expect("named")
            .to_string_lossy()
            .into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let sources: Vec<String> = if path.is_dir() {
            read_adapter(&name).into_iter().map(|(_, s)| s).collect()
        } else if path.extension().is_some_and(|e| e == "rs") {
            vec![fs::read_to_string(&path).expect("readable file")]
        } else {
            continue;
        };
        let mut to = BTreeSet::new();
        for source in &sources {
            let code = production_code(source);
            let mut paths = named_paths(&code, &name);
            let mut from = 0;
            while let Some(i) = code[from..].find("crate::") {
                let at = from + i;
                let end = code[at..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .map_or(code.len(), |n| at + n);
                paths.push(code[at..end].to_owned());
                from = end.max(at + 7);
            }
            for path in paths {
                let mut segments = path.split("::");
                if segments.next() == Some("crate")
                    && let Some(module) = segments.next().filter(|m| !m.is_empty())
                    && module != name
                {
                    to.insert(module.to_owned());
                }
            }
        }
        edges.insert(name, to);
    }
    edges
}

#[test]
fn top_level_modules_form_no_cycle_and_keep_their_roles() {
    let edges = crate_graph();
    for expected in LEAVES.iter().chain([&CORE]).chain(ADAPTERS) {
        assert!(
            edges.contains_key(*expected),
            "no module {expected} in src: {edges:?}"
        );
    }
    let as_modules: BTreeMap<Module, BTreeSet<Module>> = edges
        .iter()
        .map(|(k, v)| (vec![k.clone()], v.iter().map(|m| vec![m.clone()]).collect()))
        .collect();
    let found = cycles(&as_modules);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n{}",
        show(&found)
    );
    let mut wrong = Vec::new();
    for leaf in LEAVES {
        if !edges[*leaf].is_empty() {
            wrong.push(format!("leaf {leaf} imports {:?}", edges[*leaf]));
        }
    }
    let beyond_leaves: Vec<_> = edges[CORE]
        .iter()
        .filter(|m| !LEAVES.contains(&m.as_str()))
        .collect();
    if !beyond_leaves.is_empty() {
        wrong.push(format!("{CORE} imports {beyond_leaves:?} (leaves only)"));
    }
    for adapter in ADAPTERS {
        for other in ADAPTERS.iter().filter(|o| *o != adapter) {
            if edges[*adapter].contains(*other) {
                wrong.push(format!("adapter {adapter} imports adapter {other}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every `mod.rs` of every adapter opens with a module map that names each
/// module it declares (as `` `name` `` or [`name`]).
#[test]
fn every_adapter_mod_rs_names_each_of_its_modules() {
    let mut missing = Vec::new();
    for adapter in ADAPTERS {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(adapter);
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).expect("readable folder") {
                let path = entry.expect("readable entry").path();
                if path.is_dir() {
                    dirs.push(path);
                }
            }
            let Ok(text) = fs::read_to_string(dir.join("mod.rs")) else {
                continue;
            };
            let header: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            for line in text.lines() {
                let declared = line
                    .trim_start_matches("pub ")
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub(super) ")
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'));
                if let Some(name) = declared
                    && !header.contains(&format!("`{name}`"))
                {
                    missing.push(format!("{}: {name}", dir.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules the module map of their mod.rs does not name:\n{}",
        missing.join("\n")
    );
}

/// The parser itself: a cycle written the ways the adapters write imports
/// (a brace group, a nested path, an inline call, a grandparent) is found,
/// and test code and comments are not read.
#[test]
fn a_cycle_through_any_import_form_is_found() {
    let file = |m: &str, s: &str| {
        (
            m.split('/').map(str::to_owned).collect::<Module>(),
            s.to_owned(),
        )
    };
    let files = vec![
        (Vec::new(), "mod a;\nmod b;\n".to_owned()),
        file("a", "mod x;\n"),
        file("a/x", "use super::super::b::{self, y::{Z as W}};\n"),
        file("b", "mod y;\n"),
        file("b/y", "fn f() { crate::demo::a::x::call(); }\n"),
        file(
            "c",
            "// use super::a;\nfn g() {}\n#[cfg(test)]\nmod tests { use super::a::x; }\n",
        ),
    ];
    let edges = graph("demo", &files);
    let as_module = |s: &str| s.split('/').map(str::to_owned).collect::<Module>();
    assert_eq!(
        edges[&as_module("a/x")],
        [as_module("b"), as_module("b/y")].into()
    );
    assert_eq!(edges[&as_module("b/y")], [as_module("a/x")].into());
    assert!(edges[&as_module("c")].is_empty(), "{edges:?}");
    assert_eq!(
        cycles(&edges),
        vec![vec![as_module("a/x"), as_module("b/y")]]
    );
    assert_eq!(
        cycles(&folders(&edges)),
        vec![vec![as_module("a"), as_module("b")]]
    );
}

//! Shared by the protocol crates' `fuzz_corpus` tests (included with
//! `#[path]`): replays one checked-in fuzz corpus through the invariant
//! check its fuzz target runs, so CI catches regressions without fuzzing.

use std::fs;
use std::path::{Path, PathBuf};

/// Runs `check` on every file of corpus `target` (under `fuzz/corpus/`,
/// found from the crate at `manifest_dir`), in name order; a corpus of
/// fewer than 10 files fails, so a lost corpus cannot pass unnoticed.
pub fn replay(manifest_dir: &str, target: &str, check: impl Fn(&[u8])) {
    let dir = Path::new(manifest_dir)
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "corpus {target} has only {} files",
        files.len()
    );
    for path in files {
        eprintln!("{}", path.display());
        check(&fs::read(&path).expect("corpus file"));
    }
}

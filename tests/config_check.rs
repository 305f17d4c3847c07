//! `cutover check --config FILE` as a black box (DESIGN.md §3): every shipped
//! config is valid, every mistake of a bad config is reported at once with
//! its YAML path, and unreadable input exits 2 with a sentence.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cutover check --config PATH` from `cwd`.
fn check(path: &Path, cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("run cutover check --config {}: {e}", path.display()))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The error lines after the "FILE: N error(s):" header, asserting the header.
fn error_lines(out: &Output, file: &Path, count: usize) -> Vec<String> {
    let err = stderr(out);
    let mut lines = err.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(
        header,
        format!("{}: {count} error(s):", file.display()),
        "stderr header; whole stderr:\n{err}"
    );
    let rest: Vec<String> = lines.map(str::to_owned).collect();
    assert_eq!(
        rest.len(),
        count,
        "expected exactly {count} error line(s); whole stderr:\n{err}"
    );
    for line in &rest {
        assert!(
            line.starts_with("  ") && line[2..].contains(": "),
            "error line {line:?} is not \"  yaml.path: message\"; whole stderr:\n{err}"
        );
    }
    rest
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cutover.yaml");
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[test]
fn every_shipped_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("config");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.yaml file in {}: the shipped example config is gone",
        dir.display()
    );
    for file in &files {
        let out = check(file, root);
        let text = stdout(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cutover check {} exited {}; stdout:\n{text}\nstderr:\n{}",
            file.display(),
            out.status,
            stderr(&out)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "check of a valid file prints one line; got:\n{text}"
        );
        let prefix = format!("{}: valid (", file.display());
        assert!(
            lines[0].starts_with(&prefix) && lines[0].ends_with(')'),
            "expected {prefix:?}...\")\", got {:?}",
            lines[0]
        );
        assert!(
            stderr(&out).is_empty(),
            "a valid config prints nothing on stderr; got:\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn three_independent_mistakes_are_all_reported_with_their_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(
        dir.path(),
        r#"admin:
  socket: ./cutover.sock
state:
  file: ./cutover-state
clusters:
  - { name: cache-old, protocol: redis, endpoints: ["127.0.0.1:6379"] }
  - { name: cache-old, protocol: redis, endpoints: ["127.0.0.1:6380"] }
migrations:
  - name: cache
    protocol: redis
    listen: 127.0.0.1:7379
    source: cache-old
    target: cache-nowhere
    topics:
      - { name: sessions, match: "session:[*" }
      - { name: rest, match: "*" }
"#,
    );
    let out = check(&path, dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "invalid config must exit 2; stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "errors go to stderr only; stdout:\n{}",
        stdout(&out)
    );
    let lines = error_lines(&out, &path, 3);
    let find = |yaml_path: &str| -> String {
        let prefix = format!("  {yaml_path}: ");
        let matching: Vec<&String> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(
            matching.len(),
            1,
            "expected exactly one error at {yaml_path}; errors:\n{}",
            lines.join("\n")
        );
        matching[0][prefix.len()..].to_owned()
    };
    let target = find("migrations[0].target");
    assert!(
        target.contains("unknown cluster") && target.contains("\"cache-nowhere\""),
        "migrations[0].target message: {target:?}"
    );
    let duplicate = find("clusters[1].name");
    assert!(
        duplicate.contains("duplicate") && duplicate.contains("\"cache-old\""),
        "clusters[1].name message: {duplicate:?}"
    );
    let pattern = find("migrations[0].topics[0].match");
    assert!(
        pattern.contains("session:[*") && pattern.contains("'['"),
        "migrations[0].topics[0].match message: {pattern:?}"
    );
}

/// The file a new user wrote: a protocol typo, a bad listen port, an
/// `endpoint` typo, an unknown cluster name and Kafka auth without a SASL
/// mechanism.
/// Before, the first two hid the rest until they were fixed.
#[test]
fn five_mistakes_in_items_that_do_not_parse_are_reported_in_one_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(
        dir.path(),
        r#"clusters:
  - { name: events-old, protocol: kafak, endpoints: ["127.0.0.1:9092"] }
  - { name: events-new, protocol: kafka, endpoint: ["127.0.0.1:9093"] }
  - name: events-dr
    protocol: kafka
    endpoints: ["127.0.0.1:9094"]
    auth: { username: proxy, password: secret }
migrations:
  - name: events
    protocol: kafka
    listen: 127.0.0.1:70000
    source: events-old
    target: events-neww
    topics: [ { match: "*" } ]
"#,
    );
    let out = check(&path, dir.path());
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    let lines = error_lines(&out, &path, 6);
    for prefix in [
        "  clusters[0].protocol: unknown variant `kafak`",
        "  clusters[1].endpoint: unknown field `endpoint`",
        "  clusters[1]: missing field `endpoints`",
        "  clusters[2].auth.mechanism: is required for a kafka cluster: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        "  migrations[0].listen: ",
        "  migrations[0].target: unknown cluster \"events-neww\"",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "missing {prefix:?}; errors:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn yaml_syntax_error_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(
        dir.path(),
        "clusters:\n  - { name: cache-old, protocol: redis, endpoints: [\"127.0.0.1:6379\"\n",
    );
    let out = check(&path, dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "YAML syntax error must exit 2; stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    let lines = error_lines(&out, &path, 1);
    assert!(
        lines[0].starts_with("  (file): not valid YAML: "),
        "syntax error line: {:?}",
        lines[0]
    );
}

#[test]
fn missing_file_exits_2_with_a_sentence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("does-not-exist.yaml");
    let out = check(&path, dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing config must exit 2; stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    let lines = error_lines(&out, &path, 1);
    let expected = format!("  {}: cannot read the configuration file: ", path.display());
    assert!(
        lines[0].starts_with(&expected) && lines[0].contains("No such file or directory"),
        "missing-file line: {:?}, expected it to start with {expected:?} and name the OS error",
        lines[0]
    );
}

#[test]
fn secrets_other_users_can_read_are_warned_about_without_failing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("new.pass");
    fs::write(&password, "s3cret\n").expect("write password file");
    fs::set_permissions(&password, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let file = dir.path().join("cutover.yaml");
    fs::write(
        &file,
        format!(
            "clusters:\n  - {{ name: old, protocol: redis, endpoints: [\"127.0.0.1:6379\"], auth: {{ password: inline }} }}\n  - {{ name: new, protocol: redis, endpoints: [\"127.0.0.1:6380\"], auth: {{ password_file: \"{}\" }} }}\nmigrations: []\n",
            password.display()
        ),
    )
    .expect("write config");
    let out = check(&file, dir.path());
    assert!(
        out.status.success(),
        "warnings do not fail check: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: clusters[1].auth.password_file: {} is readable by other users (mode 644); chmod 600 it",
            password.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("warning: clusters[0].auth.password: a password written in the config file"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret") && !err.contains("inline"),
        "no secret is printed: {err}"
    );
    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let quiet = stderr(&check(&file, dir.path()));
    assert!(
        !quiet.contains("new.pass"),
        "a private file is not warned about: {quiet}"
    );
}

/// TLS files a listener names are checked at once: a missing client CA
/// (mutual TLS) is reported with its path, beside a missing key.
#[test]
fn unreadable_listener_tls_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("server.pem"), "not read by check").expect("pem");
    let path = write_config(
        dir.path(),
        r#"admin:
  socket: ./cutover.sock
state:
  file: ./cutover-state
clusters:
  - { name: old, protocol: kafka, endpoints: ["127.0.0.1:9092"] }
  - { name: new, protocol: kafka, endpoints: ["127.0.0.1:9093"] }
migrations:
  - name: events
    protocol: kafka
    listen: 127.0.0.1:19092
    source: old
    target: new
    topics: [ { match: "*" } ]
    tls: { cert_file: ./server.pem, key_file: ./no-such.key, client_ca_file: ./no-such-ca.pem }
"#,
    );
    let out = check(&path, dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = error_lines(&out, &path, 2);
    let text = lines.join("\n");
    assert!(
        text.contains("migrations[0].tls.client_ca_file: cannot read ./no-such-ca.pem"),
        "{text}"
    );
    assert!(
        text.contains("migrations[0].tls.key_file: cannot read ./no-such.key"),
        "{text}"
    );
}

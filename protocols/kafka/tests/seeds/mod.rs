//! Shared by the test files that generate the fuzz seed corpora.

/// Asserts a checked-in fuzz seed matches what the encoders produce now, or
/// rewrites it when `CUTOVER_WRITE_SEEDS=1` (after an intended format change).
pub fn check_or_write(path: std::path::PathBuf, data: impl AsRef<[u8]>) {
    if std::env::var_os("CUTOVER_WRITE_SEEDS").is_some() {
        std::fs::write(&path, data).unwrap();
        return;
    }
    let stored = std::fs::read(&path).unwrap_or_default();
    assert!(
        stored == data.as_ref(),
        "fuzz seed {} is stale: run `CUTOVER_WRITE_SEEDS=1 cargo test -p cutover-kafka` and commit it",
        path.display()
    );
}

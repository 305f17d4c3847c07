//! Replays the checked-in fuzz corpora through the same invariant checks
//! the fuzz targets run, so CI catches regressions without fuzzing.

use std::fs;
use std::path::PathBuf;

use cutover_rocketmq::selfcheck::{check_bodies, check_frames};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = fs::read(&p).expect("corpus file");
            (p, data)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "corpus {target} has only {} files",
        files.len()
    );
    files
}

#[test]
fn frame_corpus_replays() {
    for (path, data) in corpus("rocketmq_frame") {
        eprintln!("{}", path.display());
        check_frames(&data);
    }
}

#[test]
fn route_corpus_replays() {
    for (path, data) in corpus("rocketmq_route") {
        eprintln!("{}", path.display());
        check_bodies(&data);
    }
}

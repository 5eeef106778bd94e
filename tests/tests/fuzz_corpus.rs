//! Replays every committed fuzz input on stable: the seed corpora
//! (`tests/fuzz/seeds/<target>/`) and the inputs that once crashed a target
//! (`tests/fuzz/regressions/<target>/`), through the same bodies cargo-fuzz runs
//! (`shoal_tests::fuzzing`). A crash found once stays fixed.

use std::fs;
use std::path::{Path, PathBuf};

use shoal_tests::fuzzing::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files under `dir/<target>/`, sorted.
fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let dir = fuzz_dir().join(kind);
    let mut n = 0;
    for (name, body) in TARGETS {
        for path in inputs(&dir, name) {
            let data = fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| body(&data));
            assert!(
                r.is_ok(),
                "{name} panics on {} (reproduce: tests/fuzz/run --repro {name} {})",
                path.display(),
                path.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn fuzz_seed_corpora_pass() {
    let n = replay("seeds");
    // Every target has seeds (layer_stream's need root to generate, not to replay).
    for (name, _) in TARGETS {
        assert!(
            !inputs(&fuzz_dir().join("seeds"), name).is_empty(),
            "no seeds for {name}: regenerate them (see shoal_tests::fuzzing::seeds)"
        );
    }
    eprintln!("replayed {n} seed inputs");
}

#[test]
fn fuzz_regressions_stay_fixed() {
    let n = replay("regressions");
    eprintln!("replayed {n} regression inputs");
}

/// The seeds are valid inputs: each is accepted all the way (an image imports, a
/// request passes the edge), so the fuzzers start from the deep end.
#[test]
fn fuzz_seeds_are_accepted() {
    let seeds = fuzz_dir().join("seeds");
    for path in inputs(&seeds, "image_tarball") {
        let dir = tempfile::tempdir().unwrap();
        let store = shoal_node::image::ImageStore::open(&dir.path().join("s")).unwrap();
        let img = store
            .import_file(&path, &shoal_node::image::ImportLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(img.metadata.os, "busybox");
        assert!(store.rootfs(&img.fingerprint).join("bin/busybox").is_file());
    }
    let state = fuzzing::seeded_state();
    assert_eq!(state.members.len(), 2);
    assert_eq!(state.instances.len(), 1);
}

/// Regenerates the seed corpora (run by hand, as root, after changing
/// `shoal_tests::fuzzing::seeds`).
#[test]
#[ignore]
fn write_seeds() {
    let n = fuzzing::seeds::write_all(&fuzz_dir().join("seeds")).unwrap();
    eprintln!("wrote {n} seeds to {}", fuzz_dir().join("seeds").display());
}

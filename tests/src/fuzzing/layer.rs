//! Layer streams as a move's target host receives them from the source (`transfer`).

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};
use shoal_node::transfer::{import, IdRange, TransferError};

use super::scratch::{listing, tempdir};

/// Host ids of the receiving container.
const BASE: u32 = 1_000_000;
/// Bytes of stream an import may read.
const MAX_BYTES: u64 = 4 << 20;

/// Target `layer_stream`. The first byte picks the form: odd, the rest is taken as it is
/// (so the checksum mostly fails); even, its last 32 bytes are replaced by the sha256 of
/// what precedes them, so a mutated stream still verifies and reaches `apply`.
pub fn layer_stream(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 && rest.len() >= 32 {
        let body = &rest[..rest.len() - 32];
        let mut sealed = body.to_vec();
        sealed.extend_from_slice(&Sha256::digest(body));
        import_checked(&sealed);
    } else {
        import_checked(rest);
    }
}

/// Imports `bytes` into an empty `dest` beside a directory that must stay untouched.
/// A stream refused before it is applied leaves `dest` as it was; whatever happens, the
/// staging directory is gone and nothing is written outside `dest`.
fn import_checked(bytes: &[u8]) {
    let scratch = tempdir();
    let dest = scratch.path().join("dest");
    let outside = scratch.path().join("outside");
    fs::create_dir(&dest).expect("create dest");
    fs::create_dir(&outside).expect("create the outside directory");
    fs::write(outside.join("keep"), b"keep").expect("write the outside marker");

    let result = import(
        &mut &bytes[..],
        &dest,
        IdRange::unprivileged(BASE),
        MAX_BYTES,
    );
    match &result {
        Ok(stats) => assert_eq!(stats.sha256.len(), 64),
        Err(
            e @ (TransferError::Apply { .. }
            | TransferError::ParentNotDir { .. }
            | TransferError::ParentMissing { .. }
            | TransferError::DestNotDir { .. }),
        ) => {
            // Refused while applying a verified stream: `dest` may be incomplete (the
            // caller deletes it), but the message must say why.
            assert!(!e.to_string().is_empty());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(
                listing(&dest).is_empty(),
                "the refused stream ({e}) changed dest: {:?}",
                listing(&dest)
            );
        }
    }
    assert_eq!(
        listing(scratch.path())
            .into_iter()
            .filter(|p| !p.starts_with("dest"))
            .collect::<Vec<_>>(),
        vec![Path::new("outside").to_path_buf(), "outside/keep".into()],
        "the import ({result:?}) wrote outside dest"
    );
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"keep");
}

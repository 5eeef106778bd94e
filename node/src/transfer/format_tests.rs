//! The stream format on its own: records round-trip, the trailer is checked, paths
//! that could escape are refused.

use std::path::PathBuf;

use super::error::TransferError;
use super::format::*;

#[test]
fn paths_that_could_escape_are_refused() {
    for bad in [
        &b"/etc/passwd"[..],
        b"../x",
        b"a/../../x",
        b"a/./b",
        b"a//b",
        b"a/",
        b".",
        b"..",
        b"a\0b",
    ] {
        assert!(
            checked_path(bad, true).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(checked_path(b"", false).is_err());
    assert_eq!(checked_path(b"", true).unwrap(), PathBuf::new());
    assert_eq!(
        checked_path(b"a/..b/c.", false).unwrap(),
        PathBuf::from("a/..b/c.")
    );
    assert!(checked_path(&vec![b'a'; MAX_PATH + 1], false).is_err());
}

#[test]
fn records_round_trip_and_the_trailer_is_verified() {
    let mut buf = Vec::new();
    let mut enc = Encoder::new(&mut buf, true).unwrap();
    let head = EntryHead {
        path: b"a/f".to_vec(),
        kind: Kind::File { size: 3 },
        mode: 0o4755,
        uid: 5,
        gid: 6,
        mtime: (-7, 8),
        xattrs: vec![(b"user.x".to_vec(), b"y".to_vec())],
    };
    enc.entry(&head).unwrap();
    enc.put(b"abc").unwrap();
    enc.link(b"a/g", b"a/f").unwrap();
    enc.delete(b"old").unwrap();
    let counts = Counts {
        entries: 2,
        deleted: 1,
        data_bytes: 3,
    };
    let (sum, len) = enc.finish(counts).unwrap();
    assert_eq!(len, buf.len() as u64);

    let (mut dec, delta) = Decoder::new(&buf[..], u64::MAX).unwrap();
    assert!(delta);
    let Record::Entry(e) = dec.next().unwrap() else {
        panic!()
    };
    assert_eq!(
        (e.path, e.kind, e.mode, e.mtime),
        (head.path, head.kind, 0o4755, (-7, 8))
    );
    let mut data = [0u8; 3];
    dec.fill(&mut data).unwrap();
    assert_eq!(&data, b"abc");
    assert!(matches!(dec.next().unwrap(), Record::Link { .. }));
    assert!(matches!(dec.next().unwrap(), Record::Delete { .. }));
    let Record::End { counts: c, sha256 } = dec.next().unwrap() else {
        panic!()
    };
    assert_eq!((c, sha256), (counts, sum));

    let mut extra = buf.clone();
    extra.push(0);
    let (mut dec, _) = Decoder::new(&extra[..], u64::MAX).unwrap();
    let err = loop {
        match dec.next() {
            Ok(Record::Entry(_)) => dec.fill(&mut data).unwrap(),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(err, TransferError::TrailingData), "{err}");
    assert!(matches!(
        Decoder::new(&buf[..5], u64::MAX),
        Err(TransferError::Truncated)
    ));
    assert!(matches!(
        Decoder::new(&buf[..], 4),
        Err(TransferError::TooLarge { .. })
    ));
}

//! Full transfers: a sample layer moves between id ranges unchanged; a 50 MB file
//! streams through bounded buffers (throughput printed).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::time::Instant;

use super::import::staging_dir;
use super::testutil::{capability, root_or_skip, sample_layer, snapshot, tempdir};
use super::{export, import, IdRange};

const FROM: u32 = 1_000_000;
const TO: u32 = 2_000_000;

#[test]
fn round_trip_keeps_the_tree_and_shifts_owners() {
    if !root_or_skip("round_trip_keeps_the_tree_and_shifts_owners") {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    sample_layer(&src, FROM);
    let mut stream = Vec::new();
    let (manifest, sent) = export(&src, IdRange::unprivileged(FROM), None, &mut stream).unwrap();
    assert_eq!(sent.stream_bytes, stream.len() as u64);
    assert_eq!(sent.deleted, 0);
    assert_eq!(sent.bytes, 1_000_000 + 3 + 24 + 10 + 4 + 9);
    assert_eq!(manifest.len(), snapshot(&src, FROM).len());

    let dst = tmp.path().join("dst");
    let got = import(&mut &stream[..], &dst, IdRange::unprivileged(TO), u64::MAX).unwrap();
    assert_eq!(
        (got.entries, got.bytes, &got.sha256),
        (sent.entries, sent.bytes, &sent.sha256)
    );
    assert!(!got.delta);
    assert_eq!(snapshot(&dst, TO), snapshot(&src, FROM));
    assert!(!staging_dir(&dst).unwrap().exists());

    // The raw host view: shifted owners, setuid, whiteouts, links, overlay xattrs.
    let meta = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap();
    assert_eq!(
        (meta("").uid(), meta("data/a").uid(), meta("data/a").gid()),
        (TO, TO + 5, TO + 5)
    );
    assert_eq!(
        (
            meta("home/user/notes").uid(),
            meta("home/user").mode() & 0o7777
        ),
        (TO + 1000, 0o700)
    );
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(meta("srv").mode() & 0o7777, 0o2775);
    let wh = meta("etc/removed");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0 && wh.uid() == TO);
    assert!(meta("run/initctl").file_type().is_fifo());
    assert_eq!(meta("data/a").ino(), meta("data/b").ino());
    assert_eq!(meta("etc/localtime").uid(), TO);
    assert_eq!(
        fs::read_link(dst.join("etc/localtime")).unwrap(),
        PathBuf::from("/usr/share/zoneinfo/UTC")
    );
    assert_eq!(
        xattr::get(dst.join("etc/opaque"), "user.overlay.opaque")
            .unwrap()
            .unwrap(),
        b"y"
    );
    assert_eq!(
        xattr::get(dst.join("etc/opaque"), "trusted.overlay.opaque")
            .unwrap()
            .unwrap(),
        b"y"
    );
    let cap = xattr::get(dst.join("bin/ping"), "security.capability")
        .unwrap()
        .unwrap();
    assert_eq!(cap, capability(TO));
    assert_eq!(
        (
            meta("etc/hostname").mtime(),
            meta("etc/hostname").mtime_nsec()
        ),
        (1_600_000_000, 123_456_789)
    );
    assert_eq!(meta("etc").mtime(), 1_500_000_000);
}

#[test]
fn privileged_layer_round_trip() {
    if !root_or_skip("privileged_layer_round_trip") {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    sample_layer(&src, 0);
    xattr::remove(src.join("bin/ping"), "security.capability").unwrap();
    let mut stream = Vec::new();
    export(&src, IdRange::PRIVILEGED, None, &mut stream).unwrap();
    let dst = tmp.path().join("dst");
    import(&mut &stream[..], &dst, IdRange::PRIVILEGED, u64::MAX).unwrap();
    assert_eq!(snapshot(&dst, 0), snapshot(&src, 0));
}

/// Records the largest single write.
struct Chunked<W> {
    inner: W,
    max_write: usize,
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.max_write = self.max_write.max(buf.len());
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// After 30 MB were read, records how much the import had already written to disk.
struct Watch<R> {
    inner: R,
    read: u64,
    staging: PathBuf,
    staged_at_30mb: Option<u64>,
}

impl<R: Read> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read > 30 << 20 && self.staged_at_30mb.is_none() {
            let staged = fs::read_dir(&self.staging)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            self.staged_at_30mb = Some(staged);
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

#[test]
fn a_large_file_streams_without_being_held_in_memory() {
    if !root_or_skip("a_large_file_streams_without_being_held_in_memory") {
        return;
    }
    const SIZE: u64 = 50 << 20;
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut big = File::create(src.join("big")).unwrap();
    let chunk: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for i in 0..(SIZE >> 20) {
        big.write_all(&chunk[i as usize..]).unwrap();
        big.write_all(&chunk[..i as usize]).unwrap();
    }
    drop(big);

    let stream_path = tmp.path().join("stream");
    let mut sink = Chunked {
        inner: File::create(&stream_path).unwrap(),
        max_write: 0,
    };
    let t = Instant::now();
    let (_, sent) = export(&src, IdRange::PRIVILEGED, None, &mut sink).unwrap();
    let export_s = t.elapsed().as_secs_f64();
    assert_eq!(sent.bytes, SIZE);
    assert!(
        sink.max_write <= 1 << 20,
        "export wrote {} bytes at once",
        sink.max_write
    );

    let dst = tmp.path().join("dst");
    let mut watch = Watch {
        inner: File::open(&stream_path).unwrap(),
        read: 0,
        staging: staging_dir(&dst).unwrap(),
        staged_at_30mb: None,
    };
    let t = Instant::now();
    let got = import(&mut watch, &dst, IdRange::PRIVILEGED, SIZE + (1 << 20)).unwrap();
    let import_s = t.elapsed().as_secs_f64();
    assert_eq!(got.sha256, sent.sha256);
    let staged = watch.staged_at_30mb.unwrap();
    assert!(
        staged > 20 << 20,
        "only {staged} bytes on disk after 30 MB of stream"
    );
    assert_eq!(snapshot(&dst, 0), snapshot(&src, 0));

    // Exporter and importer at once, through a pipe (as over the network).
    let dst2 = tmp.path().join("dst2");
    let (mut reader, mut writer) = io::pipe().unwrap();
    let t = Instant::now();
    let got = std::thread::scope(|s| {
        let src = &src;
        let exporter =
            s.spawn(move || export(src, IdRange::PRIVILEGED, None, &mut writer).map(|r| r.1));
        let got = import(&mut reader, &dst2, IdRange::PRIVILEGED, u64::MAX).unwrap();
        assert_eq!(exporter.join().unwrap().unwrap().sha256, got.sha256);
        got
    });
    let pipe_s = t.elapsed().as_secs_f64();
    assert_eq!(got.bytes, SIZE);
    println!(
        "transfer throughput, 50 MiB file (debug build): export to a file {:.0} MiB/s, import from a file \
         {:.0} MiB/s (incl. syncfs), export|import over a pipe {:.0} MiB/s",
        mb_per_s(SIZE, export_s),
        mb_per_s(SIZE, import_s),
        mb_per_s(SIZE, pipe_s)
    );
}

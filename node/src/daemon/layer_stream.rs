//! Bridges between the blocking layer transfer (`crate::transfer`, which reads and writes
//! `std::io` streams) and gRPC streams: a writer that sends chunks into a channel and a
//! reader that takes chunks from one.

use std::io::{self, Read, Write};
use tokio::sync::mpsc;

/// Chunk size of layer streams.
pub const CHUNK: usize = 1 << 20;

/// Sends everything written, in chunks, to an async receiver.
pub struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// Reads chunks that an async task feeds; `Err` chunks end the stream with that error.
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Result<Vec<u8>, String>>) -> Self {
        Self {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_survive_the_bridge() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let d2 = data.clone();
        let writer = std::thread::spawn(move || {
            let mut w = ChannelWriter::new(tx);
            for part in d2.chunks(7777) {
                w.write_all(part).unwrap();
            }
            w.flush().unwrap();
        });
        let (tx2, rx2) = mpsc::channel(4);
        let reader = std::thread::spawn(move || {
            let mut r = ChannelReader::new(rx2);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        rt.block_on(async {
            while let Some(c) = rx.recv().await {
                tx2.send(Ok(c)).await.unwrap();
            }
            drop(tx2);
        });
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), data);
    }
}

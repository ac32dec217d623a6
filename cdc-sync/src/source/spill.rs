//! The messages of the transaction being read, kept as pgoutput sent them
//! until its commit says whether and how they are published: in memory up
//! to a bound, then in an anonymous temporary file (deleted when closed).
//! Memory stays bounded whatever the transaction's size.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use bytes::Bytes;

use crate::lsn::Lsn;

/// Per message: its WAL position and pgoutput bytes.
pub(crate) struct Pending {
    memory: Vec<(Lsn, Bytes)>,
    held: usize,
    limit: usize,
    file: Option<BufWriter<File>>,
    count: u64,
}

impl Pending {
    /// Holds up to `limit` bytes in memory.
    pub(crate) fn new(limit: usize) -> Pending {
        Pending {
            memory: Vec::new(),
            held: 0,
            limit,
            file: None,
            count: 0,
        }
    }

    /// Messages kept.
    pub(crate) fn len(&self) -> u64 {
        self.count
    }

    /// Whether the messages went to a file.
    pub(crate) fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Keeps one message; past the bound, everything goes to the file.
    pub(crate) fn push(&mut self, at: Lsn, data: Bytes) -> io::Result<()> {
        self.count += 1;
        if let Some(f) = self.file.as_mut() {
            return write_one(f, at, &data);
        }
        // Bytes' own size and the position count too.
        self.held += data.len() + 48;
        self.memory.push((at, data));
        if self.held > self.limit {
            let mut f = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
            for (at, data) in self.memory.drain(..) {
                write_one(&mut f, at, &data)?;
            }
            self.memory = Vec::new();
            self.held = 0;
            self.file = Some(f);
            tracing::info!(
                messages = self.count,
                limit_bytes = self.limit,
                "a large source transaction: spilling it to a temporary file"
            );
        }
        Ok(())
    }

    /// The messages in the order they were kept.
    pub(crate) fn into_messages(self) -> io::Result<Messages> {
        Ok(match self.file {
            None => Messages::Memory(self.memory.into_iter()),
            Some(f) => {
                let mut f = f.into_inner().map_err(io::IntoInnerError::into_error)?;
                f.rewind()?;
                Messages::File(BufReader::with_capacity(1 << 16, f))
            }
        })
    }
}

fn write_one(f: &mut impl Write, at: Lsn, data: &[u8]) -> io::Result<()> {
    f.write_all(&at.0.to_le_bytes())?;
    f.write_all(&(data.len() as u32).to_le_bytes())?;
    f.write_all(data)
}

/// Reads kept messages back, one at a time.
pub(crate) enum Messages {
    Memory(std::vec::IntoIter<(Lsn, Bytes)>),
    File(BufReader<File>),
}

impl Messages {
    /// The next message, `None` after the last.
    pub(crate) fn next_message(&mut self) -> io::Result<Option<(Lsn, Bytes)>> {
        match self {
            Messages::Memory(m) => Ok(m.next()),
            Messages::File(f) => {
                let mut head = [0u8; 12];
                match f.read_exact(&mut head) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e),
                }
                let (at, len) = head.split_at(8);
                let at = u64::from_le_bytes(at.try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                let mut data = vec![0u8; len];
                f.read_exact(&mut data)?;
                Ok(Some((Lsn(at), Bytes::from(data))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(p: Pending) -> Vec<(Lsn, Bytes)> {
        let mut m = p.into_messages().expect("messages");
        let mut out = Vec::new();
        while let Some(x) = m.next_message().expect("read") {
            out.push(x);
        }
        out
    }

    #[test]
    fn messages_come_back_in_order_from_memory_and_from_the_file() {
        let msgs: Vec<(Lsn, Bytes)> = (0..1000u64)
            .map(|i| {
                (
                    Lsn(i * 10),
                    Bytes::from(format!("message {i}").repeat(i as usize % 7)),
                )
            })
            .collect();
        let mut small = Pending::new(1 << 30);
        let mut big = Pending::new(4096);
        for (at, d) in &msgs {
            small.push(*at, d.clone()).expect("push");
            big.push(*at, d.clone()).expect("push");
        }
        assert!(!small.spilled());
        assert!(big.spilled(), "past the bound the messages go to a file");
        assert_eq!(big.len(), 1000);
        assert!(
            big.memory.is_empty(),
            "nothing is held in memory once spilled"
        );
        assert_eq!(read_all(small), msgs);
        assert_eq!(read_all(big), msgs);
    }
}

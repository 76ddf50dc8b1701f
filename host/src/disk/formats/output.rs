//! Where an image is written: a file from a base offset on (0 for a file of its own,
//! the member's data offset inside a tar). Positions are relative to the base, so the
//! writers can go back and fill headers and tables with positioned writes.

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use super::FormatError;
use crate::disk::extents::data_extents;

/// Appends are gathered into writes of this size.
const APPEND_BUFFER: usize = 1 << 20;
/// Appends at least this large are written as they are (no copy).
const DIRECT_WRITE: usize = 1 << 16;

#[derive(Clone, Copy)]
pub(crate) struct Output<'a> {
    file: &'a File,
    base: u64,
}

impl<'a> Output<'a> {
    /// Takes over `file` from `base` on, cutting off anything already there so the
    /// unwritten parts of the image read as zeros.
    pub fn new(file: &'a File, base: u64) -> Result<Self, FormatError> {
        let len = file
            .metadata()
            .map_err(|source| FormatError::Io {
                op: "reading the output file's size",
                source,
            })?
            .len();
        // Only when needed: on ext4 a truncation to size 0 makes close() write the
        // whole file back synchronously ("auto_da_alloc"), which costs seconds.
        if len > base {
            file.set_len(base).map_err(|source| FormatError::Write {
                offset: base,
                source,
            })?;
        }
        Ok(Output { file, base })
    }

    pub fn write_at(&self, buf: &[u8], pos: u64) -> Result<(), FormatError> {
        let offset = self.base + pos;
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| FormatError::Write { offset, source })
    }

    /// Sets the image length (sparse when it grows).
    pub fn set_len(&self, len: u64) -> Result<(), FormatError> {
        let offset = self.base + len;
        self.file
            .set_len(offset)
            .map_err(|source| FormatError::Write { offset, source })
    }

    /// sha256 of the image's first `len` bytes, read back. Holes are hashed as zeros
    /// without reading them.
    pub fn sha256(&self, len: u64) -> Result<[u8; 32], FormatError> {
        let end = self.base + len;
        let extents = data_extents(self.file, end).map_err(|source| FormatError::Io {
            op: "finding the data extents of the written image to hash it",
            source,
        })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; APPEND_BUFFER];
        let zeros = vec![0u8; APPEND_BUFFER];
        let mut pos = self.base;
        let data = extents.iter().filter(|e| e.end() > self.base);
        // The final empty range at `end` hashes the trailing hole.
        for (from, to) in data
            .map(|e| (e.offset.max(self.base), e.end()))
            .chain([(end, end)])
        {
            hash_zeros(&mut hasher, from - pos, &zeros);
            pos = from;
            while pos < to {
                let n = (to - pos).min(buf.len() as u64) as usize;
                self.file.read_exact_at(&mut buf[..n], pos).map_err(|source| FormatError::Io {
                    op: "reading the written image back to hash it (open the output read-write)",
                    source,
                })?;
                hasher.update(&buf[..n]);
                pos += n as u64;
            }
        }
        Ok(hasher.finalize().into())
    }
}

/// Feeds `len` zero bytes to `hasher`; `zeros` must be all zeros.
fn hash_zeros(hasher: &mut Sha256, mut len: u64, zeros: &[u8]) {
    while len > 0 {
        let n = len.min(zeros.len() as u64) as usize;
        hasher.update(&zeros[..n]);
        len -= n as u64;
    }
}

/// Buffered sequential writes from a position on, optionally hashed as they go (for
/// layouts that are written strictly in order from the start).
pub(crate) struct Appender<'a> {
    out: Output<'a>,
    /// Image position of `buf[0]`.
    pos: u64,
    buf: Vec<u8>,
    hasher: Option<Sha256>,
}

impl<'a> Appender<'a> {
    pub fn new(out: Output<'a>, pos: u64, hash: bool) -> Self {
        let hasher = hash.then(Sha256::new);
        Appender {
            out,
            pos,
            buf: Vec::with_capacity(APPEND_BUFFER),
            hasher,
        }
    }

    /// Image position of the next appended byte.
    pub fn position(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    /// Appends `data`: small pieces are gathered, large ones written directly.
    pub fn write(&mut self, data: &[u8]) -> Result<(), FormatError> {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
        if data.len() >= DIRECT_WRITE {
            self.flush()?;
            self.out.write_at(data, self.pos)?;
            self.pos += data.len() as u64;
            return Ok(());
        }
        if self.buf.len() + data.len() > APPEND_BUFFER {
            self.flush()?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Appends zeros up to the next multiple of `align`.
    pub fn pad_to(&mut self, align: u64) -> Result<(), FormatError> {
        let pad = self.position().next_multiple_of(align) - self.position();
        self.write(&vec![0u8; pad as usize])
    }

    /// Leaves `len` bytes unwritten (a hole, filled later by a positioned write).
    /// Not allowed while hashing, since the skipped bytes would be missing.
    pub fn skip(&mut self, len: u64) -> Result<(), FormatError> {
        debug_assert!(self.hasher.is_none(), "skip() in a hashed stream");
        self.flush()?;
        self.pos += len;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FormatError> {
        self.out.write_at(&self.buf, self.pos)?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered; returns the end position and the digest, if hashing.
    pub fn finish(mut self) -> Result<(u64, Option<[u8; 32]>), FormatError> {
        self.flush()?;
        Ok((self.pos, self.hasher.map(|h| h.finalize().into())))
    }
}

//! Reading the raw source disk in aligned batches, through its data extents only.
//!
//! A batch covers an aligned range of the disk; the parts of it that fall in holes are
//! never read and stay zero. Batches that touch no extent are not produced at all.
//! Each batch is a whole number of `unit`s (cluster, grain or block): the last one is
//! zero-padded past the end of the disk so every unit is full-sized.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::FormatError;
use crate::disk::extents::{data_bytes, data_extents, Extent};

/// Bytes read per batch (at least one unit).
const BATCH_BYTES: u64 = 1 << 20;
/// Batch buffers start on a page boundary: the kernel copies to and from the page
/// cache much faster than with misaligned buffers.
const PAGE: usize = 4096;
/// Buffers of finished batches kept for reuse (fresh ones must be zeroed and faulted in).
const SPARE_BUFFERS: usize = 8;

pub(crate) struct Source<'a> {
    file: &'a File,
    size: u64,
    unit: u64,
    batch: u64,
    extents: Vec<Extent>,
    spare: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

/// An aligned piece of the disk: bytes `[offset, offset + data().len())`.
pub(crate) struct Batch {
    pub offset: u64,
    /// Holds the data at `start..start + len`, page-aligned.
    buf: Vec<u8>,
    start: usize,
    len: usize,
    /// Source bytes actually read (the rest were holes or padding).
    pub read: u64,
    unit: usize,
    /// Where the buffer goes back for reuse once the batch is dropped.
    recycle: Sender<Vec<u8>>,
}

impl<'a> Source<'a> {
    /// The first `size` bytes of `file`, cut into units of `unit` bytes (a power of two).
    pub fn new(file: &'a File, size: u64, unit: u64) -> Result<Self, FormatError> {
        let extents = data_extents(file, size).map_err(|source| FormatError::Io {
            op: "finding the data extents of the source disk (SEEK_DATA/SEEK_HOLE)",
            source,
        })?;
        let batch = BATCH_BYTES.max(unit);
        Ok(Source {
            file,
            size,
            unit,
            batch,
            extents,
            spare: bounded(SPARE_BUFFERS),
        })
    }

    /// Source bytes inside data extents: what the conversion will read.
    pub fn data_bytes(&self) -> u64 {
        data_bytes(&self.extents)
    }

    /// The batches that hold data, in disk order.
    pub fn batches(&self) -> impl Iterator<Item = Result<Batch, FormatError>> + '_ {
        let mut next = 0u64;
        let mut first_extent = 0usize;
        std::iter::from_fn(move || {
            while first_extent < self.extents.len()
                && self.extents[first_extent].end() <= next * self.batch
            {
                first_extent += 1;
            }
            let extent = self.extents.get(first_extent)?;
            let index = next.max(extent.offset / self.batch);
            next = index + 1;
            Some(self.read_batch(index * self.batch, &self.extents[first_extent..]))
        })
    }

    fn read_batch(&self, offset: u64, extents: &[Extent]) -> Result<Batch, FormatError> {
        let padded_end = self.size.next_multiple_of(self.unit);
        let end = (offset + self.batch).min(padded_end);
        let len = (end - offset) as usize;
        let mut buf = self.spare.1.try_recv().unwrap_or_default();
        buf.resize(len + PAGE, 0);
        let start = buf.as_ptr().align_offset(PAGE);
        let data = &mut buf[start..start + len];
        // Extents are read; what lies between and after them is zeroed.
        let mut pos = offset;
        let mut read = 0;
        for extent in extents.iter().take_while(|e| e.offset < end) {
            let from = extent.offset.max(offset);
            let to = extent.end().min(end).min(self.size);
            if from >= to {
                continue;
            }
            data[(pos - offset) as usize..(from - offset) as usize].fill(0);
            let piece = &mut data[(from - offset) as usize..(to - offset) as usize];
            self.file
                .read_exact_at(piece, from)
                .map_err(|source| FormatError::Read {
                    offset: from,
                    source,
                })?;
            read += to - from;
            pos = to;
        }
        data[(pos - offset) as usize..].fill(0);
        Ok(Batch {
            offset,
            buf,
            start,
            len,
            read,
            unit: self.unit as usize,
            recycle: self.spare.0.clone(),
        })
    }
}

impl Batch {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The units of this batch that are not all zeros, with their unit index.
    pub fn nonzero_units(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let first = self.offset / self.unit as u64;
        self.data()
            .chunks(self.unit)
            .enumerate()
            .filter(|(_, unit)| !is_zero(unit))
            .map(move |(i, unit)| (first + i as u64, unit))
    }

    /// Maximal runs of consecutive non-zero units, as (disk offset, bytes).
    pub fn nonzero_runs(&self) -> Vec<(u64, &[u8])> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (index, _) in self.nonzero_units() {
            let start = (index - self.offset / self.unit as u64) as usize * self.unit;
            let end = start + self.unit;
            match runs.last_mut() {
                Some(run) if run.1 == start => run.1 = end,
                _ => runs.push((start, end)),
            }
        }
        runs.into_iter()
            .map(|(start, end)| (self.offset + start as u64, &self.data()[start..end]))
            .collect()
    }
}

/// True when every byte is zero. Scans 4 KiB at a time (a loop the compiler
/// vectorises) and stops at the first non-zero page.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(4096)
        .all(|page| page.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

impl Drop for Batch {
    fn drop(&mut self) {
        // When enough buffers are spare already, this one is freed.
        let _ = self.recycle.try_send(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::FileExt;

    #[test]
    fn batches_skip_holes_and_pad_the_tail() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 100]).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(&[0u8; 4096]).unwrap(); // data extent holding zeros
        f.seek(SeekFrom::Start((9 << 20) + 65536)).unwrap();
        f.write_all(&[2u8; 512]).unwrap();
        let size = (9 << 20) + 65536 + 1000;
        f.set_len(size).unwrap();

        let src = Source::new(&f, size, 65536).unwrap();
        let batches: Vec<Batch> = src.batches().map(|b| b.unwrap()).collect();
        let offsets: Vec<u64> = batches.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, [0, 5 << 20, 9 << 20]);
        // The last batch stops at the padded end: two 64 KiB units.
        assert_eq!(batches[2].data().len(), 2 * 65536);
        let units: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.nonzero_units().map(|(i, _)| i))
            .collect();
        assert_eq!(units, [0, (9 << 4) + 1]);
        let runs: Vec<(u64, usize)> = batches
            .iter()
            .flat_map(|b| b.nonzero_runs().into_iter().map(|(o, d)| (o, d.len())))
            .collect();
        assert_eq!(runs, [(0, 65536), ((9 << 20) + 65536, 65536)]);
    }

    #[test]
    fn reused_buffers_read_holes_as_zeros() {
        let f = tempfile::tempfile().unwrap();
        let size = 2 << 20;
        f.write_all_at(&vec![0xFF; 1 << 20], 0).unwrap();
        f.write_all_at(&[0xEE; 4096], size - 4096).unwrap();
        let src = Source::new(&f, size, 65536).unwrap();
        let mut seen = 0;
        // Each batch is dropped (its buffer recycled) before the next is read.
        for batch in src.batches() {
            let batch = batch.unwrap();
            if batch.offset == 1 << 20 {
                let (hole, data) = batch.data().split_at((1 << 20) - 4096);
                assert!(is_zero(hole), "stale bytes from the previous batch");
                assert!(data.iter().all(|&b| b == 0xEE));
            }
            seen += 1;
        }
        assert_eq!(seen, 2);
    }

    #[test]
    fn zero_test() {
        let mut buf = vec![0u8; 65536];
        assert!(is_zero(&buf));
        buf[65535] = 1;
        assert!(!is_zero(&buf));
        assert!(is_zero(&[]));
    }
}

//! qcow2 v3 in one pass (64 KiB clusters, 16-bit refcounts; all fields big-endian).
//!
//! Host layout: cluster 0 holds the header (written last); the data clusters follow in
//! disk order, then the L2 tables, the L1 table, the refcount blocks and the refcount
//! table. All-zero clusters are left unallocated. Compressed clusters are packed back
//! to back at byte granularity; a cluster that does not shrink is stored raw.

use super::compress::Deflater;
use super::control::Control;
use super::output::{Appender, Output};
use super::pipeline;
use super::source::{Batch, Source};
use super::FormatError;
use std::fs::File;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// u64 entries per L2 table (one cluster): one table maps 512 MiB.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// u16 entries per refcount block (refcount_order 4): one block covers 2 GiB of host file.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// L1/L2 flag: refcount is exactly 1.
const COPIED: u64 = 1 << 63;
/// L2 flag: compressed cluster descriptor.
const COMPRESSED: u64 = 1 << 62;
/// Where a compressed descriptor keeps its additional sector count: 62 - (cluster_bits - 8).
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
/// qemu stores a cluster compressed only when that saves at least a byte.
const MAX_COMPRESSED: usize = CLUSTER as usize - 1;

/// Writes `size` bytes of `file` as qcow2; `compression` is the number of compressing
/// threads, or None for a plain image. Returns the image length.
pub(crate) fn write(
    file: &File,
    size: u64,
    out: Output,
    compression: Option<usize>,
    ctl: &Control,
) -> Result<u64, FormatError> {
    let virtual_size = size.next_multiple_of(512);
    let src = Source::new(file, size, CLUSTER)?;
    let mut image = Image::new(out, virtual_size);
    match compression {
        None => pipeline::sequential(&src, ctl, |batch| {
            batch
                .nonzero_runs()
                .into_iter()
                .try_for_each(|(offset, run)| image.put_raw(offset / CLUSTER, run))
        })?,
        Some(threads) => pipeline::parallel(
            &src,
            threads,
            ctl,
            || {
                let mut deflater = Deflater::qcow2();
                move |batch: Batch| compress_batch(&mut deflater, &batch)
            },
            |clusters| {
                clusters
                    .into_iter()
                    .try_for_each(|(index, cluster)| match cluster {
                        Cluster::Deflated(payload) => image.put_compressed(index, &payload),
                        Cluster::Raw(data) => image.put_raw(index, &data),
                    })
            },
        )?,
    }
    image.finish()
}

enum Cluster {
    Deflated(Vec<u8>),
    Raw(Vec<u8>),
}

fn compress_batch(deflater: &mut Deflater, batch: &Batch) -> Vec<(u64, Cluster)> {
    batch
        .nonzero_units()
        .map(|(index, data)| {
            let mut payload = Vec::new();
            let cluster = if deflater.compress_into(data, &mut payload, MAX_COMPRESSED) {
                Cluster::Deflated(payload)
            } else {
                Cluster::Raw(data.to_vec())
            };
            (index, cluster)
        })
        .collect()
}

/// The host file being built.
struct Image<'a> {
    out: Output<'a>,
    virtual_size: u64,
    /// Appends whole clusters at the end of the host file.
    tail: Appender<'a>,
    /// L2 tables by L1 index, allocated when first used.
    l2: Vec<Option<Box<[u64]>>>,
    /// Refcount of every host cluster so far.
    refcounts: Vec<u16>,
    /// The host cluster compressed payloads are being packed into.
    packing: Option<Packing>,
}

/// A host cluster filled with compressed payloads, kept in memory until full.
struct Packing {
    host: u64,
    bytes: Vec<u8>,
    /// A raw cluster was appended after this one, which therefore has a fixed slot
    /// and cannot spill into the next cluster.
    parked: bool,
}

impl<'a> Image<'a> {
    fn new(out: Output<'a>, virtual_size: u64) -> Self {
        let l1_size = virtual_size.div_ceil(CLUSTER * L2_ENTRIES) as usize;
        Image {
            out,
            virtual_size,
            tail: Appender::new(out, CLUSTER, false),
            l2: (0..l1_size).map(|_| None).collect(),
            // Cluster 0: the header.
            refcounts: vec![1],
            packing: None,
        }
    }

    fn set_l2(&mut self, index: u64, entry: u64) {
        let table = self.l2[(index / L2_ENTRIES) as usize]
            .get_or_insert_with(|| vec![0u64; L2_ENTRIES as usize].into_boxed_slice());
        table[(index % L2_ENTRIES) as usize] = entry;
    }

    fn add_ref(&mut self, host: u64) {
        let cluster = (host / CLUSTER) as usize;
        if self.refcounts.len() <= cluster {
            self.refcounts.resize(cluster + 1, 0);
        }
        self.refcounts[cluster] += 1;
    }

    /// Appends whole clusters of data (disk clusters `first..`), cluster-aligned.
    fn put_raw(&mut self, first: u64, data: &[u8]) -> Result<(), FormatError> {
        if let Some(packing) = self.packing.as_mut().filter(|p| !p.parked) {
            // The packing cluster (never empty) keeps its slot at the tail, so later
            // payloads that fit can still go there.
            self.tail.skip(CLUSTER)?;
            packing.parked = true;
        }
        let host = self.tail.position();
        self.tail.write(data)?;
        for (i, at) in (host..host + data.len() as u64)
            .step_by(CLUSTER as usize)
            .enumerate()
        {
            self.add_ref(at);
            self.set_l2(first + i as u64, at | COPIED);
        }
        Ok(())
    }

    /// Packs one compressed payload (shorter than a cluster) after the previous one.
    fn put_compressed(&mut self, index: u64, payload: &[u8]) -> Result<(), FormatError> {
        let len = payload.len() as u64;
        let full = |p: &mut Packing| p.parked && p.bytes.len() as u64 + len > CLUSTER;
        if let Some(done) = self.packing.take_if(full) {
            self.out.write_at(&done.bytes, done.host)?;
        }
        let tail = self.tail.position();
        let packing = self.packing.get_or_insert_with(|| Packing {
            host: tail,
            bytes: Vec::with_capacity(2 * CLUSTER as usize),
            parked: false,
        });
        let host = packing.host + packing.bytes.len() as u64;
        packing.bytes.extend_from_slice(payload);
        if !packing.parked && packing.bytes.len() as u64 >= CLUSTER {
            // An unparked cluster is the tail: write it; the overflow starts the next.
            self.tail.write(&packing.bytes[..CLUSTER as usize])?;
            packing.bytes.drain(..CLUSTER as usize);
            packing.host += CLUSTER;
            if packing.bytes.is_empty() {
                self.packing = None;
            }
        }
        let last = host + len - 1;
        self.add_ref(host);
        if last / CLUSTER != host / CLUSTER {
            self.add_ref(last);
        }
        let sectors = last / 512 - host / 512;
        self.set_l2(index, COMPRESSED | (sectors << CSIZE_SHIFT) | host);
        Ok(())
    }

    /// Writes the tables and the header; returns the image length.
    fn finish(mut self) -> Result<u64, FormatError> {
        if let Some(packing) = self.packing.take() {
            if packing.parked {
                self.out.write_at(&packing.bytes, packing.host)?;
            } else {
                self.tail.write(&packing.bytes)?;
            }
        }
        self.tail.pad_to(CLUSTER)?;

        let mut l1 = vec![0u64; self.l2.len()];
        for (entry, table) in l1.iter_mut().zip(std::mem::take(&mut self.l2)) {
            if let Some(table) = table {
                *entry = self.append_table(&table)? | COPIED;
            }
        }
        let l1_offset = self.tail.position();
        self.append_table(&l1)?;

        // The refcount blocks and table count themselves: find the fixed point.
        let used = self.tail.position() / CLUSTER;
        let (blocks, table_clusters) = refcount_layout(used);
        self.refcounts.resize(used as usize, 0);
        self.refcounts
            .resize((used + blocks + table_clusters) as usize, 1);
        let refcounts = std::mem::take(&mut self.refcounts);
        let mut block_offsets = Vec::with_capacity(blocks as usize);
        for block in refcounts.chunks(REFCOUNTS_PER_BLOCK as usize) {
            block_offsets.push(self.tail.position());
            let bytes: Vec<u8> = block.iter().flat_map(|r| r.to_be_bytes()).collect();
            self.tail.write(&bytes)?;
            self.tail.pad_to(CLUSTER)?;
        }
        let refcount_table_offset = self.tail.position();
        self.append_table(&block_offsets)?;
        let (end, _) = self.tail.finish()?;

        let header = Header {
            virtual_size: self.virtual_size,
            l1_size: l1.len() as u32,
            l1_offset,
            refcount_table_offset,
            refcount_table_clusters: table_clusters as u32,
        };
        self.out.write_at(&header.to_bytes(), 0)?;
        Ok(end)
    }

    /// Appends big-endian u64s padded to whole clusters; returns where they start.
    fn append_table(&mut self, entries: &[u64]) -> Result<u64, FormatError> {
        let offset = self.tail.position();
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.tail.write(&bytes)?;
        self.tail.pad_to(CLUSTER)?;
        for cluster in (offset..self.tail.position()).step_by(CLUSTER as usize) {
            self.add_ref(cluster);
        }
        Ok(offset)
    }
}

/// Refcount blocks and refcount table clusters needed when `used` clusters precede
/// them: they must also cover themselves.
fn refcount_layout(used: u64) -> (u64, u64) {
    let (mut blocks, mut table) = (0, 0);
    loop {
        let new_blocks = (used + blocks + table).div_ceil(REFCOUNTS_PER_BLOCK);
        let new_table = (new_blocks * 8).div_ceil(CLUSTER);
        if (new_blocks, new_table) == (blocks, table) {
            return (blocks, table);
        }
        (blocks, table) = (new_blocks, new_table);
    }
}

struct Header {
    virtual_size: u64,
    l1_size: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
}

impl Header {
    /// The v3 header as qemu writes it (header_length 112, deflate compression type,
    /// no extensions: the zero bytes after it are the end-of-extensions marker).
    fn to_bytes(&self) -> [u8; 120] {
        let mut h = [0u8; 120];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
        h[24..32].copy_from_slice(&self.virtual_size.to_be_bytes());
        h[36..40].copy_from_slice(&self.l1_size.to_be_bytes());
        h[40..48].copy_from_slice(&self.l1_offset.to_be_bytes());
        h[48..56].copy_from_slice(&self.refcount_table_offset.to_be_bytes());
        h[56..60].copy_from_slice(&self.refcount_table_clusters.to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes()); // refcount_order: 16-bit
        h[100..104].copy_from_slice(&112u32.to_be_bytes()); // header_length
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::process::Command;

    enum Step {
        Deflated(usize),
        Raw,
    }

    /// Payload packing around raw clusters: spills into the next cluster, parks,
    /// fills a parked cluster exactly, moves on when a payload does not fit. The
    /// payloads are not real deflate streams, so this checks the layout: every L2
    /// entry points at its own bytes, and qemu-img check agrees with the refcounts.
    #[test]
    fn packs_payloads_around_raw_clusters() {
        use Step::*;
        let steps = [
            Deflated(30000),
            Deflated(40000), // spills into the next cluster
            Raw,             // parks the packing cluster (4464 bytes used)
            Deflated(61072), // fills the parked cluster exactly
            Deflated(100),   // starts a new one at the tail
            Raw,
            Raw,
            Deflated(5000),  // still fits in the parked cluster
            Deflated(65535), // does not: a new cluster at the tail
            Deflated(1),
        ];
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut image = Image::new(Output::new(file.as_file(), 0).unwrap(), 64 << 20);
        let payload = |i: usize, len: usize| vec![i as u8 + 1; len];
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Deflated(len) => image.put_compressed(i as u64, &payload(i, len)).unwrap(),
                Raw => image
                    .put_raw(i as u64, &payload(i, CLUSTER as usize))
                    .unwrap(),
            }
        }
        image.finish().unwrap();

        let read = |offset: u64, len: usize| {
            let mut buf = vec![0u8; len];
            file.as_file().read_exact_at(&mut buf, offset).unwrap();
            buf
        };
        let be64 = |offset: u64| u64::from_be_bytes(read(offset, 8).try_into().unwrap());
        let l2 = be64(be64(40)) & !COPIED;
        for (i, step) in steps.iter().enumerate() {
            let entry = be64(l2 + 8 * i as u64);
            let (host, len) = match *step {
                Deflated(len) => {
                    assert_eq!(entry & (COPIED | COMPRESSED), COMPRESSED, "step {i}");
                    let host = entry & ((1 << CSIZE_SHIFT) - 1);
                    let sectors = (entry >> CSIZE_SHIFT) & 0xff;
                    assert_eq!(
                        sectors,
                        (host + len as u64 - 1) / 512 - host / 512,
                        "step {i}"
                    );
                    (host, len)
                }
                Raw => {
                    assert_eq!(entry & (COPIED | COMPRESSED), COPIED, "step {i}");
                    (entry & !COPIED, CLUSTER as usize)
                }
            };
            assert_eq!(read(host, len), payload(i, len), "step {i} at {host}");
        }

        let check = Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(file.path())
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && report.contains("No errors"),
            "{report}"
        );
    }

    #[test]
    fn refcount_structures_cover_themselves() {
        assert_eq!(refcount_layout(1), (1, 1));
        // 32766 used + 1 block + 1 table cluster = exactly one block's worth.
        assert_eq!(refcount_layout(32766), (1, 1));
        assert_eq!(refcount_layout(32767), (2, 1));
        // 8192 blocks fill a table cluster; one more block needs a second one.
        let used = 8192 * REFCOUNTS_PER_BLOCK - 8192 - 1;
        assert_eq!(refcount_layout(used), (8192, 1));
        assert_eq!(refcount_layout(used + 1), (8193, 2));
    }
}

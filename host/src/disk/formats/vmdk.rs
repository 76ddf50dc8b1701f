//! VMDK streamOptimized, in VirtualBox's stream layout (not qemu-img's):
//!
//! header (gdOffset = "at end") | descriptor | zeros up to overHead
//! | grain records (LBA, size, zlib stream) in LBA order, a GT marker + GT after each
//!   32 MiB group that has grains | GD marker + GD | footer marker + footer | EOS marker
//!
//! The layout is strictly sequential, so the image is hashed as it is written.
//! Capacity is the disk size rounded up to a sector, as qemu-img does.

use std::fs::File;

use super::compress::Deflater;
use super::control::Control;
use super::output::{Appender, Output};
use super::pipeline;
use super::source::{Batch, Source};
use super::FormatError;

const SECTOR: u64 = 512;
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
/// Grain table entries per table: one GT maps 32 MiB.
const GT_ENTRIES: u64 = 512;
const GT_SECTORS: u64 = GT_ENTRIES * 4 / SECTOR;
/// Flags: newline check valid, compressed grains, markers.
const FLAGS: u32 = 1 | 1 << 16 | 1 << 17;
const GD_AT_END: u64 = u64::MAX;
const COMPRESS_DEFLATE: u16 = 1;
/// Grain record header: u64 LBA, u32 compressed size.
const GRAIN_HEADER: usize = 12;
/// VirtualBox rejects compressed grains of twice the grain size or more.
const MAX_COMPRESSED: usize = 2 * GRAIN as usize - 1;

const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// The extent name when the image's own file name cannot be quoted in the
/// descriptor. Readers never open it: the extent is embedded.
const EXTENT_NAME: &str = "disk.vmdk";

/// The name the descriptor gives the embedded extent: the image's own file name,
/// as VirtualBox's exports do, when it is printable ASCII without a quote.
fn extent_name(file_name: Option<&str>) -> &str {
    file_name
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .filter(|n| !n.contains('"'))
        .unwrap_or(EXTENT_NAME)
}

/// Writes `size` bytes of `file` as streamOptimized VMDK with `threads` compressing
/// threads; returns the image length and, if asked, its sha256.
pub(crate) fn write(
    file: &File,
    size: u64,
    out: Output,
    threads: usize,
    ctl: &Control,
    hash: bool,
    file_name: Option<&str>,
) -> Result<(u64, Option<[u8; 32]>), FormatError> {
    let capacity = size.div_ceil(SECTOR);
    let descriptor = descriptor(capacity, extent_name(file_name));
    let descriptor_sectors = (descriptor.len() as u64).div_ceil(SECTOR);
    let mut header = Header {
        capacity,
        descriptor_sectors,
        overhead: (1 + descriptor_sectors).next_multiple_of(GRAIN_SECTORS),
        gd_offset: GD_AT_END,
    };

    let mut stream = Stream::new(out, hash, capacity);
    stream.out.write(&header.to_bytes())?;
    stream.out.write(descriptor.as_bytes())?;
    // The header and descriptor end before overHead, so this pads up to it.
    stream.out.pad_to(header.overhead * SECTOR)?;

    let src = Source::new(file, size, GRAIN)?;
    pipeline::parallel(
        &src,
        threads,
        ctl,
        || {
            let mut deflater = Deflater::zlib();
            move |batch: Batch| grain_records(&mut deflater, &batch)
        },
        |records| {
            records
                .into_iter()
                .try_for_each(|(grain, record)| stream.put_grain(grain, &record))
        },
    )?;

    stream.flush_table()?;
    header.gd_offset = stream.write_directory()?;
    stream.write_marker(1, MARKER_FOOTER)?;
    stream.out.write(&header.to_bytes())?;
    stream.write_marker(0, MARKER_EOS)?;
    stream.out.finish()
}

/// Compresses every non-zero grain of a batch into its on-disk record (marker header
/// plus zlib stream, padded to a sector).
fn grain_records(deflater: &mut Deflater, batch: &Batch) -> Vec<(u64, Vec<u8>)> {
    batch
        .nonzero_units()
        .map(|(grain, data)| {
            let mut record = Vec::with_capacity(GRAIN as usize);
            record.extend_from_slice(&(grain * GRAIN_SECTORS).to_le_bytes());
            record.extend_from_slice(&[0; 4]);
            let fits = deflater.compress_into(data, &mut record, MAX_COMPRESSED);
            // zlib never expands 64 KiB anywhere near 128 KiB.
            assert!(fits, "deflate expanded a grain past twice its size");
            let len = (record.len() - GRAIN_HEADER) as u32;
            record[8..12].copy_from_slice(&len.to_le_bytes());
            record.resize(record.len().next_multiple_of(SECTOR as usize), 0);
            (grain, record)
        })
        .collect()
}

/// The image after the header: grains, tables and the directory, in order.
struct Stream<'a> {
    out: Appender<'a>,
    /// GT sector of every 32 MiB group (0: no grains there).
    directory: Vec<u32>,
    /// Index of the group whose table is being filled.
    group: u64,
    table: [u32; GT_ENTRIES as usize],
}

impl<'a> Stream<'a> {
    fn new(out: Output<'a>, hash: bool, capacity: u64) -> Self {
        let groups = capacity.div_ceil(GRAIN_SECTORS).div_ceil(GT_ENTRIES);
        Stream {
            out: Appender::new(out, 0, hash),
            directory: vec![0; groups as usize],
            group: 0,
            table: [0; GT_ENTRIES as usize],
        }
    }

    fn sector(&self) -> Result<u32, FormatError> {
        let sector = self.out.position() / SECTOR;
        u32::try_from(sector).map_err(|_| FormatError::TooLarge {
            format: "streamOptimized VMDK",
            what: "the compressed image passes 2 TiB (32-bit sector offsets)".to_string(),
        })
    }

    fn put_grain(&mut self, grain: u64, record: &[u8]) -> Result<(), FormatError> {
        if grain / GT_ENTRIES != self.group {
            self.flush_table()?;
            self.group = grain / GT_ENTRIES;
        }
        self.table[(grain % GT_ENTRIES) as usize] = self.sector()?;
        self.out.write(record)
    }

    /// Writes the current group's GT, unless it maps no grain.
    fn flush_table(&mut self) -> Result<(), FormatError> {
        if self.table.iter().all(|&e| e == 0) {
            return Ok(());
        }
        self.write_marker(GT_SECTORS, MARKER_GT)?;
        self.directory[self.group as usize] = self.sector()?;
        let table: Vec<u8> = self.table.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.out.write(&table)?;
        self.table = [0; GT_ENTRIES as usize];
        Ok(())
    }

    /// Writes the GD marker and the GD; returns the GD's sector.
    fn write_directory(&mut self) -> Result<u64, FormatError> {
        let bytes: Vec<u8> = self
            .directory
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        self.write_marker((bytes.len() as u64).div_ceil(SECTOR), MARKER_GD)?;
        let sector = self.sector()?;
        self.out.write(&bytes)?;
        self.out.pad_to(SECTOR)?;
        Ok(sector.into())
    }

    /// A metadata marker sector: u64 sectors that follow, u32 0, u32 type.
    fn write_marker(&mut self, sectors: u64, kind: u32) -> Result<(), FormatError> {
        let mut marker = [0u8; SECTOR as usize];
        marker[0..8].copy_from_slice(&sectors.to_le_bytes());
        marker[12..16].copy_from_slice(&kind.to_le_bytes());
        self.out.write(&marker)
    }
}

/// The sparse extent header, at sector 0 and again as the footer.
struct Header {
    capacity: u64,
    descriptor_sectors: u64,
    overhead: u64,
    gd_offset: u64,
}

impl Header {
    fn to_bytes(&self) -> [u8; SECTOR as usize] {
        let mut h = [0u8; SECTOR as usize];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, b"KDMV");
        put(4, &3u32.to_le_bytes());
        put(8, &FLAGS.to_le_bytes());
        put(12, &self.capacity.to_le_bytes());
        put(20, &GRAIN_SECTORS.to_le_bytes());
        put(28, &1u64.to_le_bytes()); // descriptor offset
        put(36, &self.descriptor_sectors.to_le_bytes());
        put(44, &(GT_ENTRIES as u32).to_le_bytes());
        put(56, &self.gd_offset.to_le_bytes());
        put(64, &self.overhead.to_le_bytes());
        put(73, b"\n \r\n");
        put(77, &COMPRESS_DEFLATE.to_le_bytes());
        h
    }
}

/// The embedded descriptor, as VirtualBox writes it for a stream image.
fn descriptor(capacity: u64, extent: &str) -> String {
    let cid = content_id();
    let cylinders = (capacity / (16 * 63)).min(16383);
    let nil = uuid::Uuid::nil();
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RDONLY {capacity} SPARSE \"{extent}\"\n\
         \n\
         # The disk Data Base \n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.adapterType=\"ide\"\n\
         ddb.uuid.image=\"{image}\"\n\
         ddb.uuid.parent=\"{nil}\"\n\
         ddb.uuid.modification=\"{nil}\"\n\
         ddb.uuid.parentmodification=\"{nil}\"\n\
         ddb.geometry.cylinders=\"{cylinders}\"\n\
         ddb.geometry.heads=\"16\"\n\
         ddb.geometry.sectors=\"63\"\n",
        image = uuid::Uuid::new_v4(),
    )
}

/// A random content ID (any value but the parent's ffffffff).
fn content_id() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_names_fall_back_when_they_cannot_be_quoted() {
        assert_eq!(extent_name(Some("vm-disk001.vmdk")), "vm-disk001.vmdk");
        assert_eq!(extent_name(Some("my vm.vmdk")), "my vm.vmdk");
        for bad in ["a\"b.vmdk", "line\nbreak.vmdk", "café.vmdk", ""] {
            assert_eq!(extent_name(Some(bad)), EXTENT_NAME, "{bad:?}");
        }
        assert_eq!(extent_name(None), EXTENT_NAME);
    }
}

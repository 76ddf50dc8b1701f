//! VirtualBox VDI 1.1, dynamic, 1 MiB blocks, laid out as VirtualBox does: header at
//! 0, block map at 1 MiB, data from the next MiB boundary. Non-zero blocks are
//! appended in disk order; all-zero blocks stay unallocated. The header and map are
//! written last.

use std::fs::File;

use super::control::Control;
use super::output::{Appender, Output};
use super::pipeline;
use super::source::Source;
use super::FormatError;

const BLOCK: u64 = 1 << 20;
const BLOCKS_OFFSET: u64 = 1 << 20;
/// Block map entry of a block that was never written (reads as zeros).
const UNALLOCATED: u32 = u32::MAX;
const SIGNATURE: u32 = 0xBEDA107F;
const VERSION_1_1: u32 = 0x0001_0001;
/// cbHeader of VirtualBox's "1.1 plus" header (with LCHS geometry).
const HEADER_SIZE: u32 = 0x190;
const TYPE_DYNAMIC: u32 = 1;
const PRE_HEADER: &[u8] = b"<<< Oracle VirtualBox Disk Image >>>\n";

/// Writes `size` bytes of `file` as a dynamic VDI; returns the image length.
pub(crate) fn write(
    file: &File,
    size: u64,
    out: Output,
    ctl: &Control,
) -> Result<u64, FormatError> {
    let disk_size = size.next_multiple_of(512);
    let blocks = disk_size.div_ceil(BLOCK);
    let blocks_u32 = u32::try_from(blocks)
        .ok()
        .filter(|&b| b < UNALLOCATED - 1)
        .ok_or_else(|| FormatError::TooLarge {
            format: "VDI",
            what: format!("{blocks} blocks of 1 MiB"),
        })?;
    let data_offset = (BLOCKS_OFFSET + blocks * 4).next_multiple_of(BLOCK);
    let data_offset_u32 = u32::try_from(data_offset).map_err(|_| FormatError::TooLarge {
        format: "VDI",
        what: format!("block map ends at byte {data_offset}"),
    })?;

    let src = Source::new(file, size, BLOCK)?;
    let mut map = vec![UNALLOCATED; blocks as usize];
    let mut allocated = 0u32;
    let mut data = Appender::new(out, data_offset, false);
    pipeline::sequential(&src, ctl, |batch| {
        for (index, block) in batch.nonzero_units() {
            data.write(block)?;
            map[index as usize] = allocated;
            allocated += 1;
        }
        Ok(())
    })?;
    let (end, _) = data.finish()?;

    let map_bytes: Vec<u8> = map.iter().flat_map(|e| e.to_le_bytes()).collect();
    out.write_at(&map_bytes, BLOCKS_OFFSET)?;
    let header = Header {
        disk_size,
        blocks: blocks_u32,
        allocated,
        data_offset: data_offset_u32,
    };
    out.write_at(&header.to_bytes(), 0)?;
    // With no data at all, the file must still reach the (empty) data area.
    let end = end.max(data_offset);
    out.set_len(end)?;
    Ok(end)
}

struct Header {
    disk_size: u64,
    blocks: u32,
    allocated: u32,
    data_offset: u32,
}

impl Header {
    fn to_bytes(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, PRE_HEADER);
        put(0x40, &SIGNATURE.to_le_bytes());
        put(0x44, &VERSION_1_1.to_le_bytes());
        put(0x48, &HEADER_SIZE.to_le_bytes());
        put(0x4C, &TYPE_DYNAMIC.to_le_bytes());
        put(0x154, &(BLOCKS_OFFSET as u32).to_le_bytes());
        put(0x158, &self.data_offset.to_le_bytes());
        // Legacy geometry: C/H/S 0 (VirtualBox computes them), 512-byte sectors.
        put(0x168, &512u32.to_le_bytes());
        put(0x170, &self.disk_size.to_le_bytes());
        put(0x178, &(BLOCK as u32).to_le_bytes());
        put(0x180, &self.blocks.to_le_bytes());
        put(0x184, &self.allocated.to_le_bytes());
        // Creation and modification UUIDs must be non-null for VirtualBox; they are
        // stored in RTUUID's in-memory (mixed-endian) layout.
        put(0x188, &uuid::Uuid::new_v4().to_bytes_le());
        put(0x198, &uuid::Uuid::new_v4().to_bytes_le());
        // LCHS geometry: likewise 0/0/0 with 512-byte sectors.
        put(0x1D4, &512u32.to_le_bytes());
        h
    }
}

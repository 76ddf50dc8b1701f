//! The MBR partition table: build the one-partition table of a new disk, and parse
//! an existing table so inspection can find the root partition of a partitioned
//! image. Layout and CHS rules: disk-formats.md §1.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const SECTOR_SIZE: u64 = 512;
/// Partition 1 starts at 1 MiB: the modern alignment, which also leaves GRUB's
/// core.img a 2047-sector gap.
pub const PARTITION_START_LBA: u32 = 2048;
/// Byte offset of partition 1 on a disk built here.
pub const PARTITION_OFFSET: u64 = PARTITION_START_LBA as u64 * SECTOR_SIZE;
pub const TYPE_LINUX: u8 = 0x83;

const TYPE_GPT_PROTECTIVE: u8 = 0xEE;
const TYPES_EXTENDED: [u8; 3] = [0x05, 0x0F, 0x85];
const DISK_SIGNATURE_AT: usize = 0x1B8;
const TABLE_AT: usize = 0x1BE;
const ENTRY_LEN: usize = 16;
const BOOT_SIGNATURE_AT: usize = 0x1FE;
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
const FLAG_ACTIVE: u8 = 0x80;

#[derive(Debug, thiserror::Error)]
pub enum MbrError {
    #[error(
        "partition entry {index} has boot flag {flag:#04x} (only 0x00 and 0x80 are valid): \
         the partition table is corrupt"
    )]
    BadBootFlag { index: usize, flag: u8 },
    #[error(
        "partition entry {index} (type {type_id:#04x}) is empty or starts at sector 0: \
         the partition table is corrupt"
    )]
    BadEntry { index: usize, type_id: u8 },
    #[error(
        "a filesystem of {fs_bytes} bytes does not fit an MBR partition: it must be a \
         non-zero multiple of 512 bytes and end below 2 TiB"
    )]
    UnsupportedSize { fs_bytes: u64 },
    #[error("reading the partition table of {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// What a partition entry's type byte says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Linux,
    /// A container of logical partitions (0x05, 0x0F, 0x85).
    Extended,
    /// 0xEE: the disk is really GPT; the MBR only protects it.
    GptProtective,
    Other(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEntry {
    pub bootable: bool,
    pub type_id: u8,
    pub start_lba: u32,
    pub sectors: u32,
}

impl PartitionEntry {
    pub fn kind(&self) -> PartitionKind {
        match self.type_id {
            TYPE_LINUX => PartitionKind::Linux,
            TYPE_GPT_PROTECTIVE => PartitionKind::GptProtective,
            t if TYPES_EXTENDED.contains(&t) => PartitionKind::Extended,
            t => PartitionKind::Other(t),
        }
    }

    pub fn byte_offset(&self) -> u64 {
        u64::from(self.start_lba) * SECTOR_SIZE
    }

    pub fn byte_len(&self) -> u64 {
        u64::from(self.sectors) * SECTOR_SIZE
    }

    fn encode(&self) -> [u8; ENTRY_LEN] {
        let last = u64::from(self.start_lba) + u64::from(self.sectors) - 1;
        let mut e = [0u8; ENTRY_LEN];
        e[0] = if self.bootable { FLAG_ACTIVE } else { 0 };
        e[1..4].copy_from_slice(&chs(self.start_lba.into()));
        e[4] = self.type_id;
        e[5..8].copy_from_slice(&chs(last));
        e[8..12].copy_from_slice(&self.start_lba.to_le_bytes());
        e[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        e
    }
}

/// CHS address of `lba` under the 255-head/63-sector translation, capped at
/// FE FF FF beyond cylinder 1023 like sfdisk. Nothing modern reads it, but old
/// BIOSes and tools check it.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        sector as u8 | ((cylinder >> 8) as u8) << 6,
        cylinder as u8,
    ]
}

/// A parsed or to-be-written MBR. Boot code is not part of it: `to_bytes` leaves
/// it zero and the bootloader stage writes it later, keeping 0x1B8..0x1FE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    pub disk_signature: u32,
    pub partitions: [Option<PartitionEntry>; 4],
}

impl Mbr {
    /// The table of a disk built by rehost: one active Linux partition at 1 MiB,
    /// exactly `fs_bytes` long.
    pub fn single_linux_partition(disk_signature: u32, fs_bytes: u64) -> Result<Self, MbrError> {
        let sectors = fs_bytes / SECTOR_SIZE;
        let fits = fs_bytes % SECTOR_SIZE == 0
            && sectors > 0
            && u64::from(PARTITION_START_LBA) + sectors <= u64::from(u32::MAX);
        if !fits {
            return Err(MbrError::UnsupportedSize { fs_bytes });
        }
        let entry = PartitionEntry {
            bootable: true,
            type_id: TYPE_LINUX,
            start_lba: PARTITION_START_LBA,
            sectors: sectors as u32,
        };
        Ok(Mbr {
            disk_signature,
            partitions: [Some(entry), None, None, None],
        })
    }

    pub fn to_bytes(&self) -> [u8; SECTOR_SIZE as usize] {
        let mut sector = [0u8; SECTOR_SIZE as usize];
        sector[DISK_SIGNATURE_AT..DISK_SIGNATURE_AT + 4]
            .copy_from_slice(&self.disk_signature.to_le_bytes());
        for (i, entry) in self.partitions.iter().enumerate() {
            if let Some(entry) = entry {
                let at = TABLE_AT + i * ENTRY_LEN;
                sector[at..at + ENTRY_LEN].copy_from_slice(&entry.encode());
            }
        }
        sector[BOOT_SIGNATURE_AT..].copy_from_slice(&BOOT_SIGNATURE);
        sector
    }

    /// Parses sector 0. `Ok(None)` when it carries no 55 AA signature, i.e. there
    /// is no partition table (a bare ext filesystem starts with 1 KiB of zeros, so
    /// check for an ext superblock at byte 1024 first). Entries of type 0 are
    /// empty slots. Boot flags are checked like GRUB does, which refuses to boot
    /// from a table with a bad one.
    pub fn parse(sector: &[u8; SECTOR_SIZE as usize]) -> Result<Option<Self>, MbrError> {
        if sector[BOOT_SIGNATURE_AT..] != BOOT_SIGNATURE {
            return Ok(None);
        }
        let le32 = |at: usize| u32::from_le_bytes(sector[at..at + 4].try_into().unwrap());
        let mut partitions = [None; 4];
        for (index, slot) in partitions.iter_mut().enumerate() {
            let at = TABLE_AT + index * ENTRY_LEN;
            let flag = sector[at];
            if flag & !FLAG_ACTIVE != 0 {
                return Err(MbrError::BadBootFlag { index, flag });
            }
            let type_id = sector[at + 4];
            if type_id == 0 {
                continue;
            }
            let entry = PartitionEntry {
                bootable: flag == FLAG_ACTIVE,
                type_id,
                start_lba: le32(at + 8),
                sectors: le32(at + 12),
            };
            if entry.start_lba == 0 || entry.sectors == 0 {
                return Err(MbrError::BadEntry { index, type_id });
            }
            *slot = Some(entry);
        }
        Ok(Some(Mbr {
            disk_signature: le32(DISK_SIGNATURE_AT),
            partitions,
        }))
    }

    /// Reads and parses sector 0 of `file` (`path` names it in errors). A file
    /// shorter than one sector has no table.
    pub fn read(file: &File, path: &Path) -> Result<Option<Self>, MbrError> {
        let mut sector = [0u8; SECTOR_SIZE as usize];
        match file.read_exact_at(&mut sector, 0) {
            Ok(()) => Self::parse(&sector),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(source) => Err(MbrError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// True when entry 1 is GPT's protective partition: the real table is GPT.
    pub fn is_gpt_protective(&self) -> bool {
        self.partitions[0].is_some_and(|e| e.kind() == PartitionKind::GptProtective)
    }
}

/// Size of a disk built by rehost around a filesystem of `fs_bytes`.
pub fn disk_bytes(fs_bytes: u64) -> u64 {
    PARTITION_OFFSET + fs_bytes
}

/// A random non-zero disk identifier (what `fdisk` shows as "Disk identifier").
pub fn random_disk_signature() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_bytes_match_sfdisk() {
        let mbr = Mbr::single_linux_partition(0x1234_5678, 614_400 * 512).unwrap();
        let bytes = mbr.to_bytes();
        assert_eq!(
            bytes[0x1BE..0x1CE],
            [
                0x80, 0x20, 0x21, 0x00, 0x83, 0x5E, 0x38, 0x26, 0x00, 0x08, 0x00, 0x00, 0x00, 0x60,
                0x09, 0x00
            ]
        );
        assert_eq!(bytes[0x1B8..0x1BC], [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(bytes[0x1CE..0x1FE], [0u8; 48]);
        assert_eq!(bytes[0x1FE..], [0x55, 0xAA]);
        assert_eq!(Mbr::parse(&bytes).unwrap(), Some(mbr));
    }

    #[test]
    fn chs_is_capped_past_cylinder_1023() {
        assert_eq!(chs(1024 * 255 * 63), [0xFE, 0xFF, 0xFF]);
        // Last sector of cylinder 1023: head 254, sector 63, cylinder bits 8-9 set.
        assert_eq!(chs(1024 * 255 * 63 - 1), [0xFE, 0xFF, 0xFF]);
        assert_eq!(chs(1023 * 255 * 63), [0x00, 0xC1, 0xFF]);
    }

    #[test]
    fn rejects_sizes_an_mbr_cannot_hold() {
        for size in [0, 1000, (u64::from(u32::MAX) + 1) * 512] {
            assert!(matches!(
                Mbr::single_linux_partition(1, size),
                Err(MbrError::UnsupportedSize { .. })
            ));
        }
    }

    #[test]
    fn parse_detects_missing_table_bad_flags_and_kinds() {
        assert_eq!(Mbr::parse(&[0u8; 512]).unwrap(), None);

        let mut bytes = Mbr::single_linux_partition(7, 1 << 20).unwrap().to_bytes();
        bytes[0x1BE] = 0x81;
        assert!(matches!(
            Mbr::parse(&bytes),
            Err(MbrError::BadBootFlag {
                index: 0,
                flag: 0x81
            })
        ));

        bytes[0x1BE] = 0;
        bytes[0x1BE + 4] = 0xEE;
        bytes[0x1CE..0x1DE].copy_from_slice(
            &PartitionEntry {
                bootable: false,
                type_id: 0x0F,
                start_lba: 100_000,
                sectors: 5000,
            }
            .encode(),
        );
        let mbr = Mbr::parse(&bytes).unwrap().unwrap();
        assert!(mbr.is_gpt_protective());
        assert_eq!(mbr.partitions[1].unwrap().kind(), PartitionKind::Extended);
        assert_eq!(mbr.partitions[1].unwrap().byte_offset(), 100_000 * 512);
        assert_eq!(mbr.partitions[2], None);

        bytes[0x1CE + 12..0x1CE + 16].fill(0);
        assert!(matches!(
            Mbr::parse(&bytes),
            Err(MbrError::BadEntry { index: 1, .. })
        ));
    }
}

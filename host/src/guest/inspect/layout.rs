//! Where the root filesystem sits in an image: the whole file (the usual cloud
//! instance), or a partition of an MBR disk.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// A filesystem with no partition table.
    Bare,
    /// An MBR-partitioned disk.
    Mbr,
}

/// The image's layout and where its root filesystem is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub kind: LayoutKind,
    /// 1-based number of the partition holding the root filesystem, on a disk.
    pub root_partition: Option<u8>,
    /// Byte offset of the root filesystem in the image.
    pub offset: u64,
    /// Bytes available to it: the partition, or the whole file.
    pub length: u64,
}

/// One used entry of an MBR partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Partition {
    pub number: u8,
    pub kind: u8,
    pub offset: u64,
    pub length: u64,
}

/// What the start of an image looks like.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Start {
    ExtSuperblock,
    Mbr(Vec<Partition>),
    Gpt,
    Unknown,
}

const SECTOR: u64 = 512;
/// The ext superblock starts at byte 1024; its magic 0xEF53 is at +56.
const EXT_MAGIC_AT: usize = 1024 + 56;
/// Bytes to read from the start of an image (and of a partition) to classify it.
pub(super) const PROBE_LEN: usize = 2048;

/// Whether `probe` (the first bytes of a region) starts with an ext superblock.
pub(super) fn has_ext_magic(probe: &[u8]) -> bool {
    probe.get(EXT_MAGIC_AT..EXT_MAGIC_AT + 2) == Some(&[0x53, 0xEF])
}

/// Classifies an image by its first bytes. The ext magic is checked first: a bare
/// filesystem's boot block may carry a boot sector (extlinux) with 0x55AA, but a
/// partitioned disk essentially never has the ext magic at byte 1080.
pub(super) fn classify(probe: &[u8]) -> Start {
    if has_ext_magic(probe) {
        return Start::ExtSuperblock;
    }
    if probe.get(510..512) != Some(&[0x55, 0xAA]) {
        return Start::Unknown;
    }
    let mut partitions = Vec::new();
    for number in 1..=4u8 {
        let at = 0x1BE + 16 * (number as usize - 1);
        let entry = &probe[at..at + 16];
        let (status, kind) = (entry[0], entry[4]);
        let start = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
        let sectors = u32::from_le_bytes([entry[12], entry[13], entry[14], entry[15]]);
        if status & 0x7F != 0 {
            return Start::Unknown; // not a partition table (GRUB rejects it too)
        }
        if kind == 0xEE {
            return Start::Gpt;
        }
        if kind == 0 || sectors == 0 {
            continue;
        }
        partitions.push(Partition {
            number,
            kind,
            offset: start as u64 * SECTOR,
            length: sectors as u64 * SECTOR,
        });
    }
    if partitions.is_empty() {
        Start::Unknown
    } else {
        Start::Mbr(partitions)
    }
}

impl Partition {
    /// Extended partitions hold more partition tables, not filesystems; rehost does
    /// not follow them.
    pub(super) fn is_extended(&self) -> bool {
        matches!(self.kind, 0x05 | 0x0F | 0x85)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(u8, u8, u32, u32)]) -> Vec<u8> {
        let mut sector = vec![0u8; PROBE_LEN];
        for (i, (status, kind, start, len)) in entries.iter().enumerate() {
            let at = 0x1BE + 16 * i;
            sector[at] = *status;
            sector[at + 4] = *kind;
            sector[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            sector[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        }
        sector[510] = 0x55;
        sector[511] = 0xAA;
        sector
    }

    #[test]
    fn reads_partition_entries() {
        let start = classify(&mbr(&[
            (0x80, 0x83, 2048, 4096),
            (0, 0, 0, 0),
            (0, 0x82, 6144, 10),
        ]));
        let Start::Mbr(parts) = start else {
            panic!("not an MBR: {start:?}")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].number, parts[0].offset, parts[0].length),
            (1, 1 << 20, 2 << 20)
        );
        assert_eq!((parts[1].number, parts[1].kind), (3, 0x82));
    }

    #[test]
    fn tells_other_starts_apart() {
        assert_eq!(classify(&mbr(&[(0, 0xEE, 1, 100)])), Start::Gpt);
        assert_eq!(classify(&mbr(&[(0x12, 0x83, 1, 100)])), Start::Unknown);
        assert_eq!(classify(&mbr(&[])), Start::Unknown);
        assert_eq!(classify(&[0u8; PROBE_LEN]), Start::Unknown);
        let mut ext = mbr(&[(0x80, 0x83, 2048, 4096)]);
        ext[EXT_MAGIC_AT] = 0x53;
        ext[EXT_MAGIC_AT + 1] = 0xEF;
        assert_eq!(classify(&ext), Start::ExtSuperblock);
    }
}

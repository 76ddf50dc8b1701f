//! Every disk operation: the partition table, sparse copies, ext2/3/4 tools, the
//! bootloader, and the output formats.

pub mod bootloader;
pub mod copy;
pub mod ext;
pub mod extents;
pub mod formats;
pub mod mbr;

//! Where a file's data is: SEEK_DATA/SEEK_HOLE over a sparse file, so every copy and
//! every format writer skips holes without reading them (cost follows data, not
//! apparent size).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{seek, SeekFrom};
use rustix::io::Errno;

/// A run of bytes that may hold data. Holes between extents read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// The data extents of `file` within its first `size` bytes, in order.
///
/// On a filesystem without SEEK_DATA support the whole range is one extent (the
/// writers still skip all-zero blocks by content).
pub fn data_extents(file: &File, size: u64) -> io::Result<Vec<Extent>> {
    let fd = file.as_fd();
    let mut extents = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(fd, SeekFrom::Data(pos)) {
            Ok(p) => p,
            // ENXIO: no data at or after pos.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) if pos == 0 => {
                return Ok(if size > 0 {
                    vec![Extent {
                        offset: 0,
                        length: size,
                    }]
                } else {
                    vec![]
                });
            }
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match seek(fd, SeekFrom::Hole(start)) {
            Ok(p) => p.min(size),
            Err(e) => return Err(e.into()),
        };
        if end > start {
            extents.push(Extent {
                offset: start,
                length: end - start,
            });
        }
        pos = end;
    }
    Ok(extents)
}

/// Total bytes covered by extents.
pub fn data_bytes(extents: &[Extent]) -> u64 {
    extents.iter().map(|e| e.length).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn finds_data_around_holes() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.seek(std::io::SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(&[2u8; 8192]).unwrap();
        f.set_len(128 << 20).unwrap();
        let ext = data_extents(&f, 128 << 20).unwrap();
        assert_eq!(ext.first().unwrap().offset, 0);
        assert!(ext
            .iter()
            .any(|e| e.offset <= 64 << 20 && e.end() >= (64 << 20) + 8192));
        assert!(
            data_bytes(&ext) < 1 << 20,
            "holes were reported as data: {ext:?}"
        );
    }

    #[test]
    fn empty_and_all_hole_files() {
        let f = tempfile::tempfile().unwrap();
        assert!(data_extents(&f, 0).unwrap().is_empty());
        f.set_len(1 << 30).unwrap();
        assert!(data_extents(&f, 1 << 30).unwrap().is_empty());
    }
}

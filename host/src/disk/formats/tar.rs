//! A ustar writer for OVA archives. A member is appended from memory, or streamed in
//! place: [`TarWriter::begin_member`] writes a placeholder header and returns the
//! data offset, the caller writes the content there (e.g. with
//! [`write_disk`](super::write_disk)), and [`TarWriter::finish_member`] patches the
//! size and checksum and pads to 512.
//!
//! Members are regular files, mode 0644, owner root. Sizes of 8 GiB and more do not
//! fit ustar's 11 octal digits and use the base-256 encoding of GNU tar (read by GNU
//! tar, bsdtar, Python and VirtualBox's IPRT).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::FormatError;

const BLOCK: u64 = 512;

pub struct TarWriter<'a> {
    file: &'a File,
    /// End of the archive so far (a multiple of 512).
    pos: u64,
    /// Header offset and bytes of the member being streamed.
    open: Option<(u64, Header)>,
}

impl<'a> TarWriter<'a> {
    /// Starts an archive at the beginning of `file`, cutting off anything there.
    pub fn new(file: &'a File) -> Result<Self, FormatError> {
        file.set_len(0)
            .map_err(|source| FormatError::Write { offset: 0, source })?;
        Ok(TarWriter {
            file,
            pos: 0,
            open: None,
        })
    }

    /// Appends a member holding `data`.
    pub fn append(&mut self, name: &str, data: &[u8], mtime: u64) -> Result<(), FormatError> {
        let offset = self.begin_member(name, mtime)?;
        self.write_at(data, offset)?;
        self.finish_member(data.len() as u64)
    }

    /// Writes a header for a member whose size is not known yet; returns the offset
    /// its content must be written at. Nothing else may be added until
    /// [`finish_member`](Self::finish_member).
    pub fn begin_member(&mut self, name: &str, mtime: u64) -> Result<u64, FormatError> {
        if self.open.is_some() {
            return Err(FormatError::TarState(
                "begin_member while another member is open",
            ));
        }
        let header = Header::new(name, mtime)?;
        self.write_at(&header.with_size(0), self.pos)?;
        self.open = Some((self.pos, header));
        Ok(self.pos + BLOCK)
    }

    /// Completes the open member, whose content is `size` bytes long.
    pub fn finish_member(&mut self, size: u64) -> Result<(), FormatError> {
        let (at, header) = self
            .open
            .take()
            .ok_or(FormatError::TarState("finish_member without begin_member"))?;
        self.write_at(&header.with_size(size), at)?;
        let end = at + BLOCK + size;
        let padded = end.next_multiple_of(BLOCK);
        self.write_at(&vec![0u8; (padded - end) as usize], end)?;
        self.pos = padded;
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks); returns the archive length.
    pub fn finish(self) -> Result<u64, FormatError> {
        if self.open.is_some() {
            return Err(FormatError::TarState("finish while a member is open"));
        }
        let end = self.pos + 2 * BLOCK;
        self.write_at(&[0u8; 2 * BLOCK as usize], self.pos)?;
        self.file
            .set_len(end)
            .map_err(|source| FormatError::Write {
                offset: end,
                source,
            })?;
        Ok(end)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<(), FormatError> {
        self.file
            .write_all_at(data, offset)
            .map_err(|source| FormatError::Write { offset, source })
    }
}

/// A ustar header without its size and checksum.
struct Header([u8; BLOCK as usize]);

impl Header {
    fn new(name: &str, mtime: u64) -> Result<Self, FormatError> {
        if !name.is_ascii() || name.contains('\0') {
            return Err(FormatError::NameNotAscii(name.to_string()));
        }
        if name.len() > 100 {
            return Err(FormatError::NameTooLong(name.to_string()));
        }
        let mut h = [0u8; BLOCK as usize];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0"); // uid
        h[116..124].copy_from_slice(b"0000000\0"); // gid
        put_number(&mut h[136..148], mtime);
        h[156] = b'0'; // regular file
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root"); // uname
        h[297..301].copy_from_slice(b"root"); // gname
        Ok(Header(h))
    }

    /// The finished header block for a member of `size` bytes.
    fn with_size(&self, size: u64) -> [u8; BLOCK as usize] {
        let mut h = self.0;
        put_number(&mut h[124..136], size);
        // The checksum is computed with its own field read as spaces.
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
}

/// A 12-byte numeric field: 11 octal digits and a NUL, or GNU base-256 (first byte
/// 0x80, then the value big-endian) when it does not fit.
fn put_number(field: &mut [u8], value: u64) {
    if value < 1 << 33 {
        field.copy_from_slice(format!("{value:011o}\0").as_bytes());
    } else {
        field.fill(0);
        field[0] = 0x80;
        field[4..].copy_from_slice(&value.to_be_bytes());
    }
}

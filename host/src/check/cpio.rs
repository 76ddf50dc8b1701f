//! Member names of cpio "newc" (070701) and "crc" (070702) archives, the formats
//! the Linux kernel unpacks as initramfs.
//!
//! A push parser: bytes are fed in whatever pieces a decompressor produces, file
//! data is skipped as it streams past, and only the current header and name are
//! ever buffered. Like the kernel, it accepts several archives in a row with zero
//! padding between them.

use std::io;

const HEADER_LEN: usize = 110;
const TRAILER: &[u8] = b"TRAILER!!!";
/// The kernel's PATH_MAX; a longer name means the data is not a cpio archive.
const MAX_NAME: usize = 4096;

#[derive(Debug)]
enum State {
    /// Between archives: zero padding, or the first header of the next archive.
    Gap,
    /// Collecting a 110-byte header.
    Header,
    /// Collecting the name (with its NUL and padding) of a member.
    Name {
        name_len: usize,
        padded_len: usize,
        data_len: u64,
    },
    /// Skipping file data and padding; after a trailer, the archive is complete.
    Data { left: u64, trailer: bool },
}

/// Collects the member paths of the cpio archives fed to it.
#[derive(Debug)]
pub struct CpioLister {
    state: State,
    /// Header or name bytes collected so far.
    pending: Vec<u8>,
    names: Vec<String>,
    /// Bytes fed so far, for error messages.
    offset: u64,
}

impl Default for CpioLister {
    fn default() -> Self {
        CpioLister {
            state: State::Gap,
            pending: Vec::with_capacity(HEADER_LEN),
            names: Vec::new(),
            offset: 0,
        }
    }
}

impl CpioLister {
    /// Parses as much of `data` as belongs to the current archive. Returns the
    /// bytes consumed and whether an archive was just completed by its trailer
    /// (the rest of `data` is then left for the caller).
    pub fn feed(&mut self, data: &[u8]) -> io::Result<(usize, bool)> {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let used = match self.state {
                State::Gap => {
                    let zeros = rest.iter().take_while(|&&b| b == 0).count();
                    if zeros < rest.len() {
                        self.state = State::Header;
                    }
                    zeros
                }
                State::Header => self.collect(rest, HEADER_LEN),
                State::Name { padded_len, .. } => self.collect(rest, padded_len),
                State::Data { left, .. } => left.min(rest.len() as u64) as usize,
            };
            pos += used;
            self.offset += used as u64;
            if self.advance(used)? {
                return Ok((pos, true));
            }
        }
        Ok((pos, false))
    }

    /// Moves on once the current state has what it needs, after it took `used`
    /// more bytes. Returns true when a trailer completed an archive.
    fn advance(&mut self, used: usize) -> io::Result<bool> {
        match self.state {
            State::Header if self.pending.len() == HEADER_LEN => {
                self.state = self.parse_header()?;
                self.pending.clear();
            }
            State::Name {
                name_len,
                padded_len,
                data_len,
            } if self.pending.len() == padded_len => {
                // `name_len` counts the terminating NUL.
                let name = &self.pending[..name_len - 1];
                let trailer = name == TRAILER;
                if !trailer {
                    self.names.push(String::from_utf8_lossy(name).into_owned());
                }
                self.pending.clear();
                self.state = State::Data {
                    left: padded4(data_len),
                    trailer,
                };
            }
            State::Data { left, trailer } => {
                self.state = State::Data {
                    left: left - used as u64,
                    trailer,
                };
            }
            _ => {}
        }
        if let State::Data { left: 0, trailer } = self.state {
            self.state = if trailer { State::Gap } else { State::Header };
            return Ok(trailer);
        }
        Ok(false)
    }

    /// Checks that the data fed so far ends between members, not inside one.
    pub fn check_boundary(&self) -> io::Result<()> {
        match self.state {
            State::Gap => Ok(()),
            State::Header if self.pending.is_empty() => Ok(()),
            _ => Err(invalid(format!(
                "the archive is cut off inside a member at byte {} (after {:?})",
                self.offset,
                self.names.last().map(String::as_str).unwrap_or("the start")
            ))),
        }
    }

    /// The member paths seen so far, in archive order.
    pub fn into_names(self) -> Vec<String> {
        self.names
    }

    /// Appends up to `want - pending.len()` bytes of `rest`; returns how many.
    fn collect(&mut self, rest: &[u8], want: usize) -> usize {
        let take = (want - self.pending.len()).min(rest.len());
        self.pending.extend_from_slice(&rest[..take]);
        take
    }

    fn parse_header(&self) -> io::Result<State> {
        let header = &self.pending;
        let at = self.offset - HEADER_LEN as u64;
        if &header[..6] != b"070701" && &header[..6] != b"070702" {
            return Err(invalid(format!(
                "no cpio header at byte {at} (found {:?}): not a newc/crc cpio archive",
                String::from_utf8_lossy(&header[..6])
            )));
        }
        // Fields after the magic are 8 hex digits each: ino, mode, uid, gid,
        // nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        // namesize, check.
        let field = |index: usize| {
            let start = 6 + 8 * index;
            std::str::from_utf8(&header[start..start + 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| invalid(format!("cpio header at byte {at} has a non-hex field")))
        };
        let data_len = u64::from(field(6)?);
        let name_len = field(11)? as usize;
        if name_len == 0 || name_len > MAX_NAME + 1 {
            return Err(invalid(format!(
                "cpio header at byte {at} has an impossible name size {name_len}"
            )));
        }
        Ok(State::Name {
            name_len,
            padded_len: padded4((HEADER_LEN + name_len) as u64) as usize - HEADER_LEN,
            data_len,
        })
    }
}

/// Decompressors write into the lister: every archive in the stream is listed.
impl io::Write for CpioLister {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            done += self.feed(&buf[done..])?.0;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `n` rounded up to a multiple of 4 (newc aligns names and data to 4 bytes).
fn padded4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// One newc member, built by hand.
    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0o100644,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(padded4(out.len() as u64) as usize, 0);
        out.extend_from_slice(data);
        out.resize(padded4(out.len() as u64) as usize, 0);
        out
    }

    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out: Vec<u8> = members.iter().flat_map(|(n, d)| member(n, d)).collect();
        out.extend(member("TRAILER!!!", b""));
        out
    }

    #[test]
    fn lists_members_of_concatenated_archives_fed_byte_by_byte() {
        let mut data = archive(&[
            ("kernel", b""),
            ("kernel/x86/microcode/GenuineIntel.bin", b"ucode"),
        ]);
        data.resize(512, 0);
        data.extend(archive(&[
            ("lib/modules/6.1/ahci.ko", b"\x7fELF..."),
            ("init", b"#!/bin/sh\n"),
        ]));
        let mut lister = CpioLister::default();
        for byte in &data {
            lister.write_all(std::slice::from_ref(byte)).unwrap();
        }
        lister.check_boundary().unwrap();
        assert_eq!(
            lister.into_names(),
            [
                "kernel",
                "kernel/x86/microcode/GenuineIntel.bin",
                "lib/modules/6.1/ahci.ko",
                "init"
            ]
        );
    }

    #[test]
    fn feed_stops_after_the_trailer() {
        let mut data = archive(&[("a", b"1234567")]);
        let len = data.len();
        data.extend_from_slice(b"\x1f\x8bgzip follows");
        let mut lister = CpioLister::default();
        assert_eq!(lister.feed(&data).unwrap(), (len, true));
    }

    #[test]
    fn garbage_and_cut_off_archives_are_errors() {
        let mut lister = CpioLister::default();
        let err = lister.write_all(&[b'x'; 200]).unwrap_err();
        assert!(
            err.to_string().contains("no cpio header at byte 0"),
            "{err}"
        );

        let data = archive(&[("usr/lib/big", &[7u8; 100])]);
        let mut lister = CpioLister::default();
        lister.write_all(&data[..150]).unwrap();
        let err = lister.check_boundary().unwrap_err();
        assert!(err.to_string().contains("usr/lib/big"), "{err}");
    }
}

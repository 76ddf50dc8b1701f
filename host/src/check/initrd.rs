//! Reads the member list of an initramfs image, the way the kernel unpacks it.
//!
//! An initramfs is a sequence of segments: uncompressed cpio archives (an early
//! microcode archive comes first on dracut and initramfs-tools systems), zero
//! padding, and compressed streams whose content is itself one or more cpio
//! archives. Everything streams through a [`CpioLister`]: file data is skipped,
//! never held, so a large initrd costs only the decompressors' windows.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use lzma_rust2::{Action, LzmaStream, Status, StreamResult, XzStream};
use serde::Serialize;

use super::cpio::CpioLister;
use super::resolve::ensure_regular_file;

/// The legacy LZ4 frame the kernel's `unlz4` reads (`lz4 -l`): this magic, then
/// blocks of a 4-byte little-endian compressed size and data, each block
/// decompressing to at most 8 MiB, with no end marker.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// How one segment of the image is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Cpio,
    Gzip,
    Xz,
    Lzma,
    Zstd,
    Lz4Legacy,
    /// The modern LZ4 frame format: readable here, but the kernel only unpacks
    /// the legacy format, so an initramfs stored this way does not boot.
    Lz4Frame,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Cpio => "cpio",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Lzma => "lzma",
            Format::Zstd => "zstd",
            Format::Lz4Legacy => "lz4 (legacy)",
            Format::Lz4Frame => "lz4 (frame)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error("initrd {path}: cannot read it: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("initrd {path}: {format} data at byte {offset}: {source}")]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error(
        "initrd {path}: byte {offset} starts with {found}, which is neither a cpio archive \
         nor a compressed stream the kernel unpacks"
    )]
    Unrecognised {
        path: PathBuf,
        offset: u64,
        found: String,
    },
    #[error("initrd {path}: {format} compression at byte {offset} is not supported by rehost")]
    Unsupported {
        path: PathBuf,
        format: &'static str,
        offset: u64,
    },
    #[error("initrd {path}: the file holds no cpio archive")]
    Empty { path: PathBuf },
}

/// What an initramfs holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Initrd {
    /// Member paths of every archive, in order (e.g. `usr/lib/modules/6.1.0/kernel/drivers/ata/ahci.ko.xz`).
    pub members: Vec<String>,
    /// How each segment was stored, in order.
    pub formats: Vec<Format>,
}

impl Initrd {
    /// Names of the kernel modules in the image (see [`module_name`]).
    pub fn module_names(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter_map(|path| module_name(path.rsplit('/').next().unwrap_or(path)))
            .collect()
    }
}

/// The module name of a module file name: `virtio-blk.ko.zst` → `virtio_blk`.
/// `-` and `_` are the same to modprobe, so names are kept with `_`.
pub fn module_name(file_name: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file_name.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// Lists the members of the initramfs at `path` (a host path).
pub fn read(path: &Path) -> Result<Initrd, InitrdError> {
    let io_err = |source| InitrdError::Io {
        path: path.to_owned(),
        source,
    };
    ensure_regular_file(path).map_err(io_err)?;
    let file = File::open(path).map_err(io_err)?;
    read_file(file, path)
}

/// Lists the members of the initramfs open as `file`; `path` names it in errors
/// (a guest path when a plugin asked).
pub fn read_file(file: File, path: &Path) -> Result<Initrd, InitrdError> {
    let io_err = |source| InitrdError::Io {
        path: path.to_owned(),
        source,
    };
    let mut input = BufReader::with_capacity(1 << 16, file);
    let mut lister = CpioLister::default();
    let mut formats = Vec::new();
    loop {
        skip_zeros(&mut input).map_err(io_err)?;
        let offset = input.stream_position().map_err(io_err)?;
        let magic = peek(&mut input).map_err(io_err)?;
        if magic.is_empty() {
            break;
        }
        let unsupported = |format| InitrdError::Unsupported {
            path: path.to_owned(),
            format,
            offset,
        };
        let format = match magic.as_slice() {
            [b'0', b'7', b'0', b'7', b'0', b'1' | b'2', ..] => Format::Cpio,
            [0x1f, 0x8b, ..] => Format::Gzip,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Format::Xz,
            [0x5d, 0x00, 0x00, ..] => Format::Lzma,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Format::Zstd,
            [0x02, 0x21, 0x4c, 0x18, ..] => Format::Lz4Legacy,
            [0x04, 0x22, 0x4d, 0x18, ..] => Format::Lz4Frame,
            [b'B', b'Z', b'h', ..] => return Err(unsupported("bzip2")),
            [0x89, b'L', b'Z', b'O', ..] => return Err(unsupported("lzo")),
            _ => {
                return Err(InitrdError::Unrecognised {
                    path: path.to_owned(),
                    offset,
                    found: describe_magic(&magic),
                })
            }
        };
        unpack(format, &mut input, &mut lister)
            .and_then(|()| lister.check_boundary())
            .map_err(|source| InitrdError::Corrupt {
                path: path.to_owned(),
                format: format.name(),
                offset,
                source,
            })?;
        formats.push(format);
    }
    if formats.is_empty() {
        return Err(InitrdError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Initrd {
        members: lister.into_names(),
        formats,
    })
}

/// Feeds one segment, starting at its magic, to the lister and leaves `input`
/// just past its end.
fn unpack(format: Format, input: &mut BufReader<File>, lister: &mut CpioLister) -> io::Result<()> {
    match format {
        Format::Cpio => unpack_cpio(input, lister),
        Format::Gzip => copy(&mut flate2::bufread::GzDecoder::new(input), lister),
        Format::Xz => pump(&mut XzStream::new(false), input, lister),
        Format::Lzma => pump(
            &mut LzmaStream::new_mem_limit(u32::MAX, None),
            input,
            lister,
        ),
        Format::Zstd => {
            let mut decoder =
                ruzstd::decoding::StreamingDecoder::new(input).map_err(io::Error::other)?;
            copy(&mut decoder, lister)
        }
        Format::Lz4Legacy => unpack_lz4_legacy(input, lister),
        // Frames carry no length; the frame decoder reads frames to the end of the file.
        Format::Lz4Frame => copy(&mut lz4_flex::frame::FrameDecoder::new(input), lister),
    }
}

/// An uncompressed archive: fed to the lister up to and including its trailer.
fn unpack_cpio(input: &mut BufReader<File>, lister: &mut CpioLister) -> io::Result<()> {
    loop {
        let data = input.fill_buf()?;
        if data.is_empty() {
            return Ok(()); // the caller's boundary check reports a cut-off member
        }
        let (used, complete) = lister.feed(data)?;
        input.consume(used);
        if complete {
            return Ok(());
        }
    }
}

fn copy(decoder: &mut impl Read, lister: &mut CpioLister) -> io::Result<()> {
    io::copy(decoder, lister).map(drop)
}

/// The sans-I/O decoders of lzma-rust2, which consume exactly their own stream.
trait SansIo {
    fn process(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        action: Action,
    ) -> io::Result<StreamResult>;
}

impl SansIo for XzStream {
    fn process(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        action: Action,
    ) -> io::Result<StreamResult> {
        XzStream::process(self, input, output, action)
    }
}

impl SansIo for LzmaStream {
    fn process(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        action: Action,
    ) -> io::Result<StreamResult> {
        LzmaStream::process(self, input, output, action)
    }
}

fn pump(
    decoder: &mut impl SansIo,
    input: &mut BufReader<File>,
    lister: &mut CpioLister,
) -> io::Result<()> {
    let mut out = vec![0u8; 1 << 16];
    loop {
        let data = input.fill_buf()?;
        let action = if data.is_empty() {
            Action::Finish
        } else {
            Action::Run
        };
        let result = decoder.process(data, &mut out, action)?;
        input.consume(result.bytes_consumed);
        lister.write_all(&out[..result.bytes_produced])?;
        if result.status == Status::StreamEnd {
            return Ok(());
        }
        if action == Action::Finish && result.bytes_produced == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the compressed stream is cut off",
            ));
        }
    }
}

fn unpack_lz4_legacy(input: &mut BufReader<File>, lister: &mut CpioLister) -> io::Result<()> {
    let max_compressed = lz4_flex::block::get_maximum_output_size(LZ4_LEGACY_BLOCK);
    let mut compressed = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    input.consume(4); // the magic, already peeked
    loop {
        let mut word = [0u8; 4];
        let got = read_up_to(input, &mut word)?;
        if got == 0 {
            return Ok(());
        }
        let size = u32::from_le_bytes(word);
        if got < 4 || size == 0 || size as usize > max_compressed {
            if size == LZ4_LEGACY_MAGIC && got == 4 {
                continue; // another legacy stream joined to this one
            }
            // Not a block size: the stream ended and padding or another segment follows.
            input.seek_relative(-(got as i64))?;
            return Ok(());
        }
        compressed.resize(size as usize, 0);
        input.read_exact(&mut compressed)?;
        let len = lz4_flex::block::decompress_into(&compressed, &mut block)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        lister.write_all(&block[..len])?;
    }
}

/// Skips zero padding between segments.
fn skip_zeros(input: &mut BufReader<File>) -> io::Result<()> {
    loop {
        let data = input.fill_buf()?;
        if data.is_empty() {
            return Ok(());
        }
        let zeros = data.iter().take_while(|&&b| b == 0).count();
        let done = zeros < data.len();
        input.consume(zeros);
        if done {
            return Ok(());
        }
    }
}

/// The next (up to) 6 bytes, left unread.
fn peek(input: &mut BufReader<File>) -> io::Result<Vec<u8>> {
    let mut magic = [0u8; 6];
    let got = read_up_to(input, &mut magic)?;
    input.seek_relative(-(got as i64))?;
    Ok(magic[..got].to_vec())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn describe_magic(magic: &[u8]) -> String {
    let hex: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = magic
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect();
    format!("{} ({text:?})", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_ignore_directories_and_normalise_dashes() {
        assert_eq!(
            module_name("virtio-blk.ko.zst").as_deref(),
            Some("virtio_blk")
        );
        assert_eq!(module_name("ahci.ko").as_deref(), Some("ahci"));
        assert_eq!(module_name("modules.dep"), None);
        assert_eq!(module_name(".ko"), None);
    }
}

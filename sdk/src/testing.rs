//! Helpers for native unit tests of plugin logic (not built for wasm).

use crate::fixer::{FixContext, NewRoot};
use crate::{OsInfo, TargetHardware};

/// The context a pipeline gives a fixer for an `os_id` `version_id` x86_64 guest
/// moving to `target`, with `config` as the fixer's table: no kernels inspected, the
/// new root an ext3 filesystem (UUID "u") on the target's first disk. Tests that
/// need more set the fields they care about.
pub fn fix_context(
    os_id: &str,
    version_id: &str,
    target: TargetHardware,
    config: &str,
) -> FixContext {
    FixContext {
        os: OsInfo {
            id: os_id.into(),
            version_id: version_id.into(),
            pretty_name: String::new(),
            id_like: vec![],
            arch: "x86_64".into(),
        },
        target,
        kernels: vec![],
        root: NewRoot {
            uuid: "u".into(),
            label: None,
            fs_type: "ext3".into(),
            device: match target {
                TargetHardware::Virtualbox => "/dev/sda1".into(),
                TargetHardware::Kvm => "/dev/vda1".into(),
            },
        },
        config: config.into(),
        dry_run: false,
    }
}

/// An uncompressed initramfs (cpio "newc") holding empty files named `members`,
/// for [`crate::fixer::DirGuest::initrd_modules`] to read.
pub fn newc_archive(members: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, name) in members.iter().chain(["TRAILER!!!"].iter()).enumerate() {
        let mode = if *name == "TRAILER!!!" { 0 } else { 0o100644 };
        out.extend_from_slice(b"070701");
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        // rdevmajor, rdevminor, namesize (with its NUL), check.
        for field in [ino, mode, 0, 0, 1, 0, 0, 0, 0, 0, 0, name.len() + 1, 0] {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(&mut out);
    }
    out
}

/// Member names of an uncompressed newc/crc cpio archive, up to its trailer.
pub(crate) fn newc_members(data: &[u8]) -> Result<Vec<String>, String> {
    const HEADER: usize = 110;
    let mut names = Vec::new();
    let mut at = 0;
    loop {
        let header = data
            .get(at..at + HEADER)
            .ok_or_else(|| format!("no cpio trailer (the archive ends at byte {at})"))?;
        if !header.starts_with(b"070701") && !header.starts_with(b"070702") {
            return Err(format!(
                "no newc cpio header at byte {at} (DirGuest reads uncompressed archives only)"
            ));
        }
        let field = |i: usize| {
            let hex = &header[6 + 8 * i..14 + 8 * i];
            std::str::from_utf8(hex)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad cpio header field at byte {at}"))
        };
        let (file_size, name_size) = (field(6)?, field(11)?);
        let name_end = at + HEADER + name_size;
        let name = data
            .get(at + HEADER..name_end.saturating_sub(1))
            .ok_or_else(|| format!("cpio name past the end at byte {at}"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "TRAILER!!!" {
            return Ok(names);
        }
        names.push(name);
        at = align4(align4(name_end) + file_size);
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(align4(out.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_read_back() {
        let members = [
            "usr/lib/modules/6.1/kernel/drivers/block/virtio_blk.ko",
            "init",
        ];
        let data = newc_archive(&members);
        assert_eq!(data.len() % 4, 0);
        assert_eq!(newc_members(&data).unwrap(), members);
        assert!(newc_members(&data[..data.len() - 120]).is_err());
        assert!(newc_members(b"\x1f\x8b compressed").is_err());
    }
}

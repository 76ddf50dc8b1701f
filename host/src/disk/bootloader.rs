//! GRUB 2 for BIOS (i386-pc), installed into a disk image file without
//! grub-install, loop devices or the guest's own GRUB files (disk-formats.md §2.7):
//! grub-mkimage builds a core.img that embeds every module and an early config
//! which finds the root filesystem by UUID; core.img goes into the gap after the
//! MBR, and a patched boot.img into the MBR's code area. The GRUB files come from
//! the host (package grub-pc-bin).
//!
//! Also generates the grub.cfg text that core.img reads from `/boot/grub/`.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::disk::mbr::{Mbr, MbrError, SECTOR_SIZE};

/// Where Debian's grub-pc-bin puts the i386-pc images and modules.
pub const GRUB_DIR: &str = "/usr/lib/grub/i386-pc";

/// Embedded into core.img, so the guest needs no `/boot/grub/i386-pc/*.mod`.
/// Disk, partition table and filesystem access, the commands a generated
/// grub.cfg uses (search, serial console, linux/initrd with compressed kernels),
/// `legacycfg` for a guest's GRUB-legacy menu (its `pause` needs `sleep`), and
/// `halt reboot ls cat` for menus and the rescue shell.
const MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "ext2",
    "normal",
    "search",
    "search_fs_uuid",
    "search_label",
    "configfile",
    "echo",
    "test",
    "linux",
    "boot",
    "serial",
    "terminal",
    "gzio",
    "xzio",
    "lzopio",
    "legacycfg",
    "sleep",
    "halt",
    "reboot",
    "ls",
    "cat",
];

/// grub-setup's cap on core.img: it must load below 0x78000 from 0x9000.
const MAX_CORE_SECTORS: u64 = (0x78000 - 0x9000) / SECTOR_SIZE;
/// core.img goes right after the MBR.
const CORE_LBA: u64 = 1;
/// diskboot.img's load segment for the rest of core.img (linear 0x8200).
const CORE_LOAD_SEGMENT: u16 = 0x820;
/// boot.img fields (disk-formats.md §2.2).
const BOOT_KERNEL_SECTOR_AT: usize = 0x5C;
const BOOT_DRIVE_AT: usize = 0x64;
const BOOT_DRIVE_CHECK_AT: usize = 0x66;
/// Bytes of LBA 0 that belong to the disk, not to boot.img: the BPB and the
/// disk signature + partition table.
const DISK_OWNED: [std::ops::Range<usize>; 2] = [0x03..0x5A, 0x1B8..0x1FE];

#[derive(Debug, thiserror::Error)]
pub enum BootloaderError {
    #[error(
        "GRUB's i386-pc files are missing ({missing} in {dir}): install the grub-pc-bin \
         package"
    )]
    GrubFilesMissing { dir: PathBuf, missing: String },
    #[error("grub-mkimage is not installed: install the grub-common package")]
    MkimageMissing,
    #[error("grub-mkimage failed ({status}): {stderr}")]
    Mkimage {
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error(
        "GRUB's core.img is {sectors} sectors; at most {limit} fit (GRUB's own limit is \
         {MAX_CORE_SECTORS}): drop modules or leave a larger gap before partition 1"
    )]
    CoreTooLarge { sectors: u64, limit: u64 },
    #[error("{path} has no MBR partition table: build the disk layout before the bootloader")]
    NoPartitionTable { path: PathBuf },
    #[error("{path} is a GPT disk; only MBR disks get a BIOS GRUB here")]
    GptDisk { path: PathBuf },
    #[error("{path}: {source}")]
    PartitionTable { path: PathBuf, source: MbrError },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no boot entries and no GRUB-legacy config: nothing to boot")]
    NothingToBoot,
    #[error("boot entry {title:?}: {path:?} must be an absolute path in the guest")]
    RelativePath { title: String, path: String },
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> BootloaderError + 'a {
    move |source| BootloaderError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What to install, and where.
pub struct GrubInstall<'a> {
    /// A raw disk image with an MBR whose first partition starts after the gap
    /// (LBA 2048 on disks built by `mbr`).
    pub disk: &'a Path,
    /// UUID of the root filesystem, which holds `/boot/grub/grub.cfg`.
    pub root_uuid: uuid::Uuid,
    /// Put GRUB's own menu on the first serial port as well as the screen.
    pub serial_console: bool,
    /// Usually `GRUB_DIR`.
    pub grub_dir: &'a Path,
}

/// Installs GRUB into `request.disk`. Returns the size of core.img in sectors.
pub fn install(request: &GrubInstall) -> Result<u64, BootloaderError> {
    let boot_img = read_grub_file(request.grub_dir, "boot.img")?;
    let boot_img: [u8; SECTOR_SIZE as usize] =
        boot_img
            .try_into()
            .map_err(|_| BootloaderError::GrubFilesMissing {
                dir: request.grub_dir.to_owned(),
                missing: "a 512-byte boot.img".into(),
            })?;
    let mut core = build_core_image(request)?;
    core.resize(core.len().next_multiple_of(SECTOR_SIZE as usize), 0);
    let core_sectors = core.len() as u64 / SECTOR_SIZE;

    let disk = File::options()
        .read(true)
        .write(true)
        .open(request.disk)
        .map_err(io_error("opening", request.disk))?;
    let mut mbr = [0u8; SECTOR_SIZE as usize];
    disk.read_exact_at(&mut mbr, 0)
        .map_err(io_error("reading the MBR of", request.disk))?;
    let gap = embedding_gap(&mbr, request.disk)?;
    let limit = gap.min(MAX_CORE_SECTORS);
    if core_sectors > limit {
        return Err(BootloaderError::CoreTooLarge {
            sectors: core_sectors,
            limit,
        });
    }
    set_block_list(&mut core, core_sectors);

    // core.img first: until boot.img is in place, nothing points at it.
    disk.write_all_at(&core, CORE_LBA * SECTOR_SIZE)
        .map_err(io_error("writing GRUB's core.img into", request.disk))?;
    disk.write_all_at(&patch_boot_image(boot_img, &mbr), 0)
        .map_err(io_error("writing GRUB's boot.img into", request.disk))?;
    disk.sync_all()
        .map_err(io_error("flushing", request.disk))?;
    Ok(core_sectors)
}

fn read_grub_file(dir: &Path, name: &str) -> Result<Vec<u8>, BootloaderError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BootloaderError::GrubFilesMissing {
            dir: dir.to_owned(),
            missing: name.to_owned(),
        },
        _ => BootloaderError::Io {
            op: "reading",
            path,
            source: e,
        },
    })
}

/// Sectors between the MBR and the first partition, as GRUB's own
/// `pc_partition_map_embed` counts them.
fn embedding_gap(
    sector0: &[u8; SECTOR_SIZE as usize],
    path: &Path,
) -> Result<u64, BootloaderError> {
    let mbr = Mbr::parse(sector0)
        .map_err(|source| BootloaderError::PartitionTable {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| BootloaderError::NoPartitionTable {
            path: path.to_owned(),
        })?;
    if mbr.is_gpt_protective() {
        return Err(BootloaderError::GptDisk {
            path: path.to_owned(),
        });
    }
    let first_start = mbr
        .partitions
        .iter()
        .flatten()
        .map(|p| u64::from(p.start_lba))
        .min()
        .ok_or_else(|| BootloaderError::NoPartitionTable {
            path: path.to_owned(),
        })?;
    Ok(first_start - CORE_LBA)
}

/// Runs grub-mkimage with the early config: serial console (optional), then the
/// root filesystem by UUID. If the search fails, `-p (,msdos1)/boot/grub` has
/// already set root to partition 1 of the boot drive, so the same prefix results.
fn build_core_image(request: &GrubInstall) -> Result<Vec<u8>, BootloaderError> {
    for needed in ["kernel.img", "moddep.lst"] {
        if !request.grub_dir.join(needed).is_file() {
            return Err(BootloaderError::GrubFilesMissing {
                dir: request.grub_dir.to_owned(),
                missing: needed.into(),
            });
        }
    }
    let work =
        tempfile::tempdir().map_err(io_error("creating a directory in", &std::env::temp_dir()))?;
    let early_cfg = work.path().join("early.cfg");
    let core_img = work.path().join("core.img");
    std::fs::write(
        &early_cfg,
        early_config(request.root_uuid, request.serial_console),
    )
    .map_err(io_error("writing", &early_cfg))?;
    let output = Command::new("grub-mkimage")
        .arg("--format=i386-pc")
        .arg("--directory")
        .arg(request.grub_dir)
        .args(["--prefix", "(,msdos1)/boot/grub", "--config"])
        .arg(&early_cfg)
        .arg("--output")
        .arg(&core_img)
        .args(MODULES)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BootloaderError::MkimageMissing,
            _ => BootloaderError::Io {
                op: "running grub-mkimage for",
                path: request.disk.to_owned(),
                source: e,
            },
        })?;
    if !output.status.success() {
        return Err(BootloaderError::Mkimage {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    std::fs::read(&core_img).map_err(io_error("reading", &core_img))
}

fn early_config(root_uuid: uuid::Uuid, serial_console: bool) -> String {
    let mut cfg = String::new();
    if serial_console {
        cfg.push_str(SERIAL_SETUP);
    }
    writeln!(cfg, "search --no-floppy --fs-uuid --set=root {root_uuid}").unwrap();
    cfg.push_str("set prefix=($root)/boot/grub\n");
    cfg
}

const SERIAL_SETUP: &str = "serial --unit=0 --speed=115200\n\
                            terminal_input serial console\n\
                            terminal_output serial console\n";

/// Rewrites diskboot.img's block list (the end of core.img's first sector) to
/// "the next `sectors - 1` sectors after LBA 1, loaded at 0x8200". grub-mkimage
/// writes the same for LBA 1; writing it makes the placement explicit.
fn set_block_list(core: &mut [u8], sectors: u64) {
    const ENTRY0_START: usize = 0x1F4;
    let entry0 = ENTRY0_START..ENTRY0_START + 12;
    let mut entry = [0u8; 12];
    entry[..8].copy_from_slice(&(CORE_LBA + 1).to_le_bytes());
    entry[8..10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    entry[10..].copy_from_slice(&CORE_LOAD_SEGMENT.to_le_bytes());
    core[entry0].copy_from_slice(&entry);
    core[ENTRY0_START - 12..ENTRY0_START].fill(0);
}

/// boot.img pointed at core.img, with the disk's own BPB and partition table.
fn patch_boot_image(
    mut boot: [u8; SECTOR_SIZE as usize],
    disk_mbr: &[u8; SECTOR_SIZE as usize],
) -> [u8; SECTOR_SIZE as usize] {
    boot[BOOT_KERNEL_SECTOR_AT..BOOT_KERNEL_SECTOR_AT + 8].copy_from_slice(&CORE_LBA.to_le_bytes());
    // 0xFF: boot from the drive the BIOS booted (DL), whatever its number.
    boot[BOOT_DRIVE_AT] = 0xFF;
    // A hard disk: NOP the floppy-drive check, as grub-setup does.
    boot[BOOT_DRIVE_CHECK_AT..BOOT_DRIVE_CHECK_AT + 2].copy_from_slice(&[0x90, 0x90]);
    for range in DISK_OWNED {
        boot[range.clone()].copy_from_slice(&disk_mbr[range]);
    }
    boot
}

/// One kernel to boot. Paths are guest paths; the root filesystem holds /boot,
/// so they are also GRUB's paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub title: String,
    pub kernel: String,
    pub initrd: Option<String>,
    /// Added after the standard arguments (root, ro, consoles).
    pub extra_cmdline: String,
}

/// Input of `grub_cfg`.
pub struct GrubConfig<'a> {
    /// Menu entries, the default first.
    pub entries: &'a [BootEntry],
    /// Guest path of a GRUB-legacy config (`/boot/grub/grub.conf` or `menu.lst`),
    /// if the guest has one. With no entries the menu is that file; otherwise it
    /// is one more entry, so kernels the guest's updates add stay bootable.
    pub legacy_config: Option<&'a str>,
    pub root_uuid: uuid::Uuid,
    pub timeout_secs: u32,
    /// GRUB and the kernel also talk on ttyS0 at 115200 baud.
    pub serial_console: bool,
}

/// The text of `/boot/grub/grub.cfg`. The caller writes it into the guest and
/// decides what to do with a grub.cfg the guest already has (e.g. one from the
/// guest's own GRUB 2, which this file replaces).
pub fn grub_cfg(config: &GrubConfig) -> Result<String, BootloaderError> {
    let mut cfg = String::from("# Written by rehost: GRUB 2 reads it from /boot/grub/.\n");
    if config.serial_console {
        cfg.push_str(SERIAL_SETUP);
    }
    writeln!(
        cfg,
        "search --no-floppy --fs-uuid --set=root {}",
        config.root_uuid
    )
    .unwrap();
    if config.entries.is_empty() {
        let Some(path) = config.legacy_config else {
            return Err(BootloaderError::NothingToBoot);
        };
        // The legacy file brings its own default and timeout.
        writeln!(cfg, "legacy_configfile {}", quote(path)).unwrap();
        return Ok(cfg);
    }
    writeln!(cfg, "set default=0\nset timeout={}", config.timeout_secs).unwrap();
    let consoles = if config.serial_console {
        " console=tty0 console=ttyS0,115200"
    } else {
        ""
    };
    for entry in config.entries {
        let mut paths = std::iter::once(&entry.kernel).chain(&entry.initrd);
        if let Some(path) = paths.find(|p| !p.starts_with('/')) {
            return Err(BootloaderError::RelativePath {
                title: entry.title.clone(),
                path: path.clone(),
            });
        }
        writeln!(cfg, "\nmenuentry {} {{", quote(&entry.title)).unwrap();
        write!(
            cfg,
            "\tlinux {} root=UUID={} ro{consoles}",
            quote(&entry.kernel),
            config.root_uuid
        )
        .unwrap();
        for word in entry.extra_cmdline.split_whitespace() {
            write!(cfg, " {}", quote(word)).unwrap();
        }
        cfg.push('\n');
        if let Some(initrd) = &entry.initrd {
            writeln!(cfg, "\tinitrd {}", quote(initrd)).unwrap();
        }
        cfg.push_str("}\n");
    }
    if let Some(path) = config.legacy_config {
        writeln!(
            cfg,
            "\nmenuentry {} {{\n\tlegacy_configfile {}\n}}",
            quote(&format!("Guest's GRUB legacy menu ({path})")),
            quote(path)
        )
        .unwrap();
    }
    Ok(cfg)
}

/// A word for GRUB's shell-like script: as is when it is plain, otherwise in
/// single quotes (where nothing is special, and `'` is written `'\''`).
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=,:@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0b6f7a4c-6a38-4d43-9e6e-5d3b2c8f1a11";

    fn entry(title: &str, extra: &str) -> BootEntry {
        BootEntry {
            title: title.into(),
            kernel: "/boot/vmlinuz-2.6.18-398.el5".into(),
            initrd: Some("/boot/initrd-2.6.18-398.el5.img".into()),
            extra_cmdline: extra.into(),
        }
    }

    #[test]
    fn config_with_entries_and_serial_console() {
        let entries = [entry("CentOS (2.6.18)", "quiet a=b'c")];
        let cfg = grub_cfg(&GrubConfig {
            entries: &entries,
            legacy_config: Some("/boot/grub/grub.conf"),
            root_uuid: UUID.parse().unwrap(),
            timeout_secs: 5,
            serial_console: true,
        })
        .unwrap();
        let expected = format!(
            "# Written by rehost: GRUB 2 reads it from /boot/grub/.\n\
             serial --unit=0 --speed=115200\n\
             terminal_input serial console\n\
             terminal_output serial console\n\
             search --no-floppy --fs-uuid --set=root {UUID}\n\
             set default=0\n\
             set timeout=5\n\
             \n\
             menuentry 'CentOS (2.6.18)' {{\n\
             \tlinux /boot/vmlinuz-2.6.18-398.el5 root=UUID={UUID} ro console=tty0 \
             console=ttyS0,115200 quiet 'a=b'\\''c'\n\
             \tinitrd /boot/initrd-2.6.18-398.el5.img\n\
             }}\n\
             \n\
             menuentry 'Guest'\\''s GRUB legacy menu (/boot/grub/grub.conf)' {{\n\
             \tlegacy_configfile /boot/grub/grub.conf\n\
             }}\n"
        );
        assert_eq!(cfg, expected);
    }

    #[test]
    fn config_without_entries_uses_the_legacy_file() {
        let cfg = grub_cfg(&GrubConfig {
            entries: &[],
            legacy_config: Some("/boot/grub/menu.lst"),
            root_uuid: UUID.parse().unwrap(),
            timeout_secs: 5,
            serial_console: false,
        })
        .unwrap();
        assert!(cfg.ends_with(&format!(
            "search --no-floppy --fs-uuid --set=root {UUID}\nlegacy_configfile /boot/grub/menu.lst\n"
        )));
        assert!(!cfg.contains("serial"));
    }

    #[test]
    fn config_errors() {
        let base = |entries| GrubConfig {
            entries,
            legacy_config: None,
            root_uuid: uuid::Uuid::nil(),
            timeout_secs: 0,
            serial_console: false,
        };
        assert!(matches!(
            grub_cfg(&base(&[])),
            Err(BootloaderError::NothingToBoot)
        ));
        let mut relative = entry("x", "");
        relative.initrd = Some("initrd.img".into());
        assert!(matches!(
            grub_cfg(&base(&[relative])),
            Err(BootloaderError::RelativePath { .. })
        ));
    }

    #[test]
    fn boot_image_keeps_the_disk_bytes() {
        let boot = [0xAB; 512];
        let mut mbr = [0u8; 512];
        mbr[0x10] = 1;
        mbr[0x1C0] = 2;
        mbr[0x1FE..].copy_from_slice(&[0x55, 0xAA]);
        let out = patch_boot_image(boot, &mbr);
        assert_eq!(out[..3], [0xAB; 3]);
        assert_eq!(out[0x03..0x5A], mbr[0x03..0x5A]);
        assert_eq!(out[0x5C..0x64], 1u64.to_le_bytes());
        assert_eq!(out[0x64..0x68], [0xFF, 0xAB, 0x90, 0x90]);
        assert_eq!(out[0x68..0x1B8], [0xAB; 0x150]);
        assert_eq!(out[0x1B8..0x1FE], mbr[0x1B8..0x1FE]);
        assert_eq!(out[0x1FE..], [0xAB; 2]);
    }

    #[test]
    fn block_list_points_after_the_first_core_sector() {
        let mut core = vec![0xCC; 3 * 512];
        set_block_list(&mut core, 3);
        assert_eq!(
            core[0x1E8..0x200],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x20, 0x08]
        );
    }
}

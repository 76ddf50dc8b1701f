//! GRUB installed by `disk::bootloader` boots for real: qemu (TCG) runs SeaBIOS,
//! which loads boot.img and core.img from the disk, and GRUB reads grub.cfg from
//! the ext4 root filesystem. The host has no kernel to boot, so each test stops
//! at GRUB and looks for markers on the serial console.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rehost::disk::bootloader::{
    grub_cfg, install, BootEntry, BootloaderError, GrubConfig, GrubInstall, GRUB_DIR,
};
use rehost::disk::copy::{Control, RangeCopy};
use rehost::disk::ext::{fsck, read_superblock, FsLocation, FsckMode, FsckOutcome};
use rehost::disk::mbr::{disk_bytes, Mbr, PARTITION_OFFSET};

use common::run;

/// Far above what GRUB needs under TCG (seconds); only a hung boot hits it.
const BOOT_DEADLINE: Duration = Duration::from_secs(600);

/// A disk as the layout stage builds it (MBR, ext4 with `uuid` at 1 MiB) from
/// the files in `files` (guest path, contents), with GRUB installed.
fn bootable_disk(dir: &Path, uuid: uuid::Uuid, files: &[(&str, &[u8])]) -> PathBuf {
    let tree = dir.join("tree");
    for (path, contents) in files {
        let path = tree.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let fs = dir.join("root.ext4");
    run(
        "mke2fs",
        &[
            "-q",
            "-t",
            "ext4",
            "-L",
            "root",
            "-F",
            "-U",
            &uuid.to_string(),
            "-d",
            tree.to_str().unwrap(),
            fs.to_str().unwrap(),
            "64M",
        ],
    );
    let sb = read_superblock(&FsLocation::bare(&fs)).unwrap();
    assert_eq!(sb.uuid, uuid);

    let disk_path = dir.join("disk.raw");
    let disk = File::create_new(&disk_path).unwrap();
    let mbr = Mbr::single_linux_partition(0x5eed_0001, sb.fs_bytes()).unwrap();
    disk.write_all_at(&mbr.to_bytes(), 0).unwrap();
    disk.set_len(disk_bytes(sb.fs_bytes())).unwrap();
    let fs_file = File::open(&fs).unwrap();
    RangeCopy {
        src: &fs_file,
        src_path: &fs,
        src_offset: 0,
        length: sb.fs_bytes(),
        dst: &disk,
        dst_path: &disk_path,
        dst_offset: PARTITION_OFFSET,
    }
    .run(&Control::default())
    .unwrap();
    drop(disk);

    let sectors = install(&GrubInstall {
        disk: &disk_path,
        root_uuid: sb.uuid,
        serial_console: true,
        grub_dir: Path::new(GRUB_DIR),
    })
    .unwrap();
    assert!(
        sectors > 50 && sectors < 2047,
        "core.img: {sectors} sectors"
    );

    // The install touched neither the table nor the filesystem.
    let mut lba0 = [0u8; 512];
    File::open(&disk_path)
        .unwrap()
        .read_exact_at(&mut lba0, 0)
        .unwrap();
    assert_eq!(lba0[0x1B8..], mbr.to_bytes()[0x1B8..]);
    assert_ne!(lba0[..0x1B8], [0u8; 0x1B8]);
    let in_disk = FsLocation::partition(&disk_path, PARTITION_OFFSET, sb.fs_bytes());
    assert_eq!(
        fsck(&in_disk, FsckMode::CheckOnly).unwrap().outcome,
        FsckOutcome::Clean
    );
    disk_path
}

/// A running qemu; killed and reaped however the test ends.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots `disk` and returns the serial console output once every marker has
/// appeared, or panics with the output when qemu exits or the deadline passes
/// first.
fn boot_until(disk: &Path, drive_args: &[String], markers: &[&str]) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nographic", "-no-reboot", "-m", "256"])
        .args(drive_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-x86_64 (package qemu-system-x86)");
    let mut stdout = child.stdout.take().unwrap();
    let qemu = Qemu(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut output = Vec::new();
    let deadline = Instant::now() + BOOT_DEADLINE;
    let seen = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        markers.iter().all(|m| text.contains(m))
    };
    while !seen(&output) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => output.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    drop(qemu);
    let text = String::from_utf8_lossy(&output).into_owned();
    assert!(
        seen(&output),
        "booting {} did not show {markers:?}; serial console:\n{text}",
        disk.display()
    );
    text
}

fn ide(disk: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=ide", disk.display()),
    ]
}

#[test]
fn boots_grub_cfg_from_ide() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = b"echo REHOST-IDE-MARKER\nhalt\n";
    let disk = bootable_disk(
        dir.path(),
        uuid::Uuid::new_v4(),
        &[("/boot/grub/grub.cfg", cfg)],
    );
    boot_until(&disk, &ide(&disk), &["REHOST-IDE-MARKER"]);
}

#[test]
fn boots_grub_cfg_from_sata_ahci() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = b"echo REHOST-AHCI-MARKER\nhalt\n";
    let disk = bootable_disk(
        dir.path(),
        uuid::Uuid::new_v4(),
        &[("/boot/grub/grub.cfg", cfg)],
    );
    let args = [
        "-device".to_owned(),
        "ahci,id=ahci".to_owned(),
        "-drive".to_owned(),
        format!("id=d,file={},if=none,format=raw", disk.display()),
        "-device".to_owned(),
        "ide-hd,drive=d,bus=ahci.0".to_owned(),
    ];
    boot_until(&disk, &args, &["REHOST-AHCI-MARKER"]);
}

/// When the UUID in core.img no longer matches (the filesystem got a new one),
/// GRUB still reads grub.cfg from partition 1 of the boot drive. Installing
/// again over an installed GRUB also works.
#[test]
fn falls_back_to_partition_1_when_the_uuid_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = b"echo REHOST-FALLBACK-MARKER\nhalt\n";
    let disk = bootable_disk(
        dir.path(),
        uuid::Uuid::new_v4(),
        &[("/boot/grub/grub.cfg", cfg)],
    );
    install(&GrubInstall {
        disk: &disk,
        root_uuid: uuid::Uuid::new_v4(),
        serial_console: true,
        grub_dir: Path::new(GRUB_DIR),
    })
    .unwrap();
    boot_until(&disk, &ide(&disk), &["REHOST-FALLBACK-MARKER"]);
}

/// The generated grub.cfg: GRUB shows the entry, finds the kernel at its guest
/// path and tries to load it (the fake kernel's bad magic proves the path).
#[test]
fn generated_config_reaches_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = uuid::Uuid::new_v4();
    let cfg = grub_cfg(&GrubConfig {
        entries: &[BootEntry {
            title: "Rehost generated entry".into(),
            kernel: "/boot/vmlinuz-fake".into(),
            initrd: Some("/boot/initrd-fake".into()),
            extra_cmdline: "quiet".into(),
        }],
        legacy_config: None,
        root_uuid: uuid,
        timeout_secs: 1,
        serial_console: true,
    })
    .unwrap();
    let disk = bootable_disk(
        dir.path(),
        uuid,
        &[
            ("/boot/vmlinuz-fake", &[0x5A; 64 << 10]),
            ("/boot/initrd-fake", b""),
            ("/boot/grub/grub.cfg", cfg.as_bytes()),
        ],
    );
    boot_until(
        &disk,
        &ide(&disk),
        &["Rehost generated entry", "invalid magic number"],
    );
}

/// A guest that only has a GRUB-legacy menu.lst (indented, as distributions
/// write it) boots through `legacy_configfile`.
#[test]
fn legacy_menu_boots_through_legacy_configfile() {
    let dir = tempfile::tempdir().unwrap();
    let menu = b"default 0\ntimeout 1\n\ntitle Rehost legacy entry\n\troot (hd0,0)\n\
                 \tpause REHOST-LEGACY-PAUSE\n\tkernel /boot/vmlinuz ro root=/dev/sda1\n";
    let uuid = uuid::Uuid::new_v4();
    let cfg = grub_cfg(&GrubConfig {
        entries: &[],
        legacy_config: Some("/boot/grub/menu.lst"),
        root_uuid: uuid,
        timeout_secs: 5,
        serial_console: true,
    })
    .unwrap();
    let disk = bootable_disk(
        dir.path(),
        uuid,
        &[
            ("/boot/grub/menu.lst", menu),
            ("/boot/grub/grub.cfg", cfg.as_bytes()),
        ],
    );
    boot_until(
        &disk,
        &ide(&disk),
        &["Rehost legacy entry", "REHOST-LEGACY-PAUSE"],
    );
}

#[test]
fn generated_config_passes_grub_script_check() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [BootEntry {
        title: "CentOS (2.6.18-398.el5) 'quoted' $x".into(),
        kernel: "/boot/vmlinuz-2.6.18-398.el5".into(),
        initrd: Some("/boot/initrd-2.6.18-398.el5.img".into()),
        extra_cmdline: "quiet rd_NO_LUKS a=$b;c".into(),
    }];
    let cfg = grub_cfg(&GrubConfig {
        entries: &entries,
        legacy_config: Some("/boot/grub/grub.conf"),
        root_uuid: uuid::Uuid::new_v4(),
        timeout_secs: 5,
        serial_console: true,
    })
    .unwrap();
    let path = dir.path().join("grub.cfg");
    std::fs::write(&path, &cfg).unwrap();
    run("grub-script-check", &[path.to_str().unwrap()]);
}

#[test]
fn install_refuses_unsuitable_disks() {
    let dir = tempfile::tempdir().unwrap();
    let request = |disk: &Path| {
        install(&GrubInstall {
            disk,
            root_uuid: uuid::Uuid::nil(),
            serial_console: false,
            grub_dir: Path::new(GRUB_DIR),
        })
    };
    let disk_with = |name: &str, sector: [u8; 512]| {
        let path = dir.path().join(name);
        let f = File::create(&path).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&sector, 0).unwrap();
        path
    };

    let bare = disk_with("bare.raw", [0; 512]);
    assert!(matches!(
        request(&bare),
        Err(BootloaderError::NoPartitionTable { .. })
    ));

    let mut gpt = Mbr::single_linux_partition(1, 4 << 20).unwrap();
    gpt.partitions[0].as_mut().unwrap().type_id = 0xEE;
    let gpt = disk_with("gpt.raw", gpt.to_bytes());
    assert!(matches!(
        request(&gpt),
        Err(BootloaderError::GptDisk { .. })
    ));

    // The DOS-era layout: partition 1 at LBA 63 leaves 62 sectors.
    let mut dos = Mbr::single_linux_partition(1, 4 << 20).unwrap();
    dos.partitions[0].as_mut().unwrap().start_lba = 63;
    let dos = disk_with("dos.raw", dos.to_bytes());
    let before = std::fs::read(&dos).unwrap();
    let err = request(&dos).unwrap_err();
    assert!(
        matches!(err, BootloaderError::CoreTooLarge { limit: 62, .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&dos).unwrap(),
        before,
        "a refused install wrote"
    );

    let err = install(&GrubInstall {
        disk: &dos,
        root_uuid: uuid::Uuid::nil(),
        serial_console: false,
        grub_dir: &dir.path().join("no-grub"),
    })
    .unwrap_err();
    assert!(err.to_string().contains("grub-pc-bin"), "{err}");
}

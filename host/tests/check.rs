//! The check stage against guest trees built in temp dirs, with initrds made by
//! the real cpio and compressors (gzip, xz, zstd, lz4) the way dracut and
//! initramfs-tools make them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rehost::check::initrd::{self, Format, InitrdError};
use rehost::check::resolve::GuestRoot;
use rehost::check::{
    discover_boot_entries, run, BootEntry, CheckInput, Finding, Report, Severity, Target,
};

const UUID: &str = "5d6f3c1a-8e2b-4f0c-9a7d-1b2c3d4e5f60";
const RELEASE: &str = "6.1.0-18-amd64";
const MODULES: &str = "usr/lib/modules/6.1.0-18-amd64/kernel";

// ---------------------------------------------------------------- initrd making

/// Runs `program args` with `input` on stdin and returns its stdout.
fn pipe(program: &str, args: &[&str], cwd: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} could not start: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A newc cpio archive (`cpio -o -H newc`) of files at `paths` holding `size` bytes each.
fn cpio(paths: &[&str], size: usize) -> Vec<u8> {
    let staging = tempfile::tempdir().expect("staging dir");
    let mut list = String::new();
    for path in paths {
        let file = staging.path().join(path);
        fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        fs::write(&file, vec![b'm'; size]).expect("write member");
        list.push_str(path);
        list.push('\n');
    }
    pipe(
        "cpio",
        &["-o", "-H", "newc", "--quiet"],
        staging.path(),
        list.as_bytes(),
    )
}

/// `data` compressed by the real tool, with the options the initramfs tools use.
fn compress(format: Format, data: &[u8]) -> Vec<u8> {
    let cwd = Path::new("/");
    match format {
        Format::Cpio => data.to_vec(),
        Format::Gzip => pipe("gzip", &["-c", "-9"], cwd, data),
        Format::Xz => pipe("xz", &["-c", "--check=crc32"], cwd, data),
        Format::Lzma => pipe("xz", &["-c", "--format=lzma"], cwd, data),
        Format::Zstd => pipe("zstd", &["-c", "-q", "-19"], cwd, data),
        Format::Lz4Legacy => pipe("lz4", &["-c", "-l", "-q"], cwd, data),
        Format::Lz4Frame => pipe("lz4", &["-c", "-q"], cwd, data),
    }
}

/// An uncompressed early-microcode archive, as dracut and initramfs-tools put first.
fn early_microcode() -> Vec<u8> {
    cpio(&["kernel/x86/microcode/GenuineIntel.bin"], 300)
}

fn module_paths(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| match *name {
            "ahci" | "libahci" | "ata_piix" => format!("{MODULES}/drivers/ata/{name}.ko"),
            "sd_mod" => format!("{MODULES}/drivers/scsi/sd_mod.ko"),
            "virtio_blk" => format!("{MODULES}/drivers/block/virtio_blk.ko"),
            "virtio_pci" => format!("{MODULES}/drivers/virtio/virtio_pci.ko"),
            other => format!("{MODULES}/misc/{other}.ko"),
        })
        .collect()
}

/// A main initrd archive with `modules` (plus an init script), compressed.
fn main_initrd(modules: &[&str], format: Format) -> Vec<u8> {
    let mut paths = module_paths(modules);
    paths.push("init".to_owned());
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    compress(format, &cpio(&refs, 64))
}

fn write_temp(data: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write temp file");
    file
}

// ---------------------------------------------------------------- guest trees

/// A Debian-like guest that passes every check on both targets.
struct Guest {
    dir: tempfile::TempDir,
}

impl Guest {
    fn good() -> Guest {
        let guest = Guest {
            dir: tempfile::tempdir().expect("guest dir"),
        };
        // Merged /usr: /lib is a link, so module lookups cross it.
        guest.mkdir("usr/lib/modules");
        guest.link("usr/lib", "lib");
        guest.write(
            "etc/fstab",
            &format!(
                "# /etc/fstab\nUUID={UUID} / ext4 errors=remount-ro 0 1\n/swapfile none swap sw 0 0\n"
            ),
        );
        guest.write(&format!("boot/vmlinuz-{RELEASE}"), "kernel image");
        guest.link(&format!("/boot/vmlinuz-{RELEASE}"), "vmlinuz");
        guest.write_bytes(
            &format!("boot/initrd.img-{RELEASE}"),
            &main_initrd(
                &["ahci", "libahci", "sd_mod", "virtio_blk", "virtio_pci"],
                Format::Gzip,
            ),
        );
        guest.write(
            &format!("usr/lib/modules/{RELEASE}/modules.builtin"),
            "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n",
        );
        guest.write(
            &format!("{MODULES}/drivers/net/ethernet/intel/e1000/e1000.ko"),
            "module",
        );
        guest.write(&format!("{MODULES}/drivers/net/virtio_net.ko.xz"), "module");
        // Distribution kernel trees link to host-absolute source paths.
        guest.link(
            "/usr/src/linux-headers-6.1.0-18-amd64",
            &format!("usr/lib/modules/{RELEASE}/build"),
        );
        guest.write(
            "boot/grub/grub.cfg",
            &format!(
                "menuentry 'Debian GNU/Linux' {{\n\
                 \tlinux /boot/vmlinuz-{RELEASE} root=UUID={UUID} ro console=tty0 console=ttyS0,115200\n\
                 \tinitrd /boot/initrd.img-{RELEASE}\n}}\n"
            ),
        );
        guest.write("usr/lib/systemd/systemd", "");
        guest.write("usr/lib/systemd/system/getty@.service", "[Unit]\n");
        guest.link(
            "/lib/systemd/system/getty@.service",
            "etc/systemd/system/getty.target.wants/getty@tty1.service",
        );
        guest.write("etc/rc.local", "#!/bin/sh -e\nexit 0\n");
        guest.write("etc/modprobe.d/blacklist.conf", "blacklist pcspkr\n");
        guest.write("usr/sbin/update-initramfs", "#!/bin/sh\n");
        guest
    }

    fn path(&self, guest_path: &str) -> PathBuf {
        self.dir.path().join(guest_path.trim_start_matches('/'))
    }

    fn mkdir(&self, guest_path: &str) {
        fs::create_dir_all(self.path(guest_path)).expect("mkdir in guest");
    }

    fn write(&self, guest_path: &str, text: &str) {
        self.write_bytes(guest_path, text.as_bytes());
    }

    fn write_bytes(&self, guest_path: &str, data: &[u8]) {
        let path = self.path(guest_path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir in guest");
        fs::write(path, data).expect("write in guest");
    }

    fn link(&self, target: &str, guest_path: &str) {
        let path = self.path(guest_path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir in guest");
        let _ = fs::remove_file(&path);
        symlink(target, path).expect("symlink in guest");
    }

    fn remove(&self, guest_path: &str) {
        fs::remove_file(self.path(guest_path)).expect("remove from guest");
    }

    fn input(&self, target: Target) -> CheckInput {
        CheckInput {
            root: self.dir.path().to_owned(),
            fs_uuid: UUID.to_owned(),
            fs_label: Some("rootfs".to_owned()),
            device: "/dev/sda1".to_owned(),
            target,
            boot_entries: Vec::new(),
        }
    }

    fn check(&self, target: Target) -> Report {
        run(&self.input(target)).expect("check runs")
    }
}

/// The one finding with `id` and `severity`; fails showing the whole report otherwise.
fn the<'a>(report: &'a Report, id: &'a str, severity: Severity) -> &'a Finding {
    let found: Vec<&Finding> = report
        .with_id(id)
        .filter(|f| f.severity == severity)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {severity:?} {id} finding in:\n{report}"
    );
    found[0]
}

fn assert_all_ok(report: &Report) {
    assert_eq!(
        report.count(Severity::Ok),
        report.findings.len(),
        "expected only OK findings:\n{report}"
    );
}

// ---------------------------------------------------------------- initrd reader

#[test]
fn initrd_reader_lists_modules_in_every_kernel_compression() {
    for format in [
        Format::Cpio,
        Format::Gzip,
        Format::Xz,
        Format::Lzma,
        Format::Zstd,
        Format::Lz4Legacy,
        Format::Lz4Frame,
    ] {
        let file = write_temp(&main_initrd(&["ahci", "virtio-blk"], format));
        let image = initrd::read(file.path()).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(image.formats, [format]);
        let modules: Vec<String> = image.module_names().into_iter().collect();
        assert_eq!(modules, ["ahci", "virtio_blk"], "{format:?}");
        assert!(image.members.contains(&"init".to_owned()), "{format:?}");
    }
}

#[test]
fn initrd_reader_follows_an_early_microcode_archive_into_the_compressed_main_one() {
    for format in [Format::Gzip, Format::Xz, Format::Zstd, Format::Lz4Legacy] {
        let mut data = early_microcode();
        assert_eq!(data.len() % 512, 0, "cpio pads its output to 512 bytes");
        data.extend(main_initrd(&["sd_mod"], format));
        let image =
            initrd::read(write_temp(&data).path()).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(image.formats, [Format::Cpio, format]);
        assert_eq!(image.members[0], "kernel/x86/microcode/GenuineIntel.bin");
        assert!(image.module_names().contains("sd_mod"), "{format:?}");
    }
}

#[test]
fn initrd_reader_takes_concatenated_streams_and_padding() {
    // Two gzip members with zero padding between them, then another archive in xz.
    let mut data = main_initrd(&["ahci"], Format::Gzip);
    data.resize(data.len().next_multiple_of(512) + 512, 0);
    data.extend(main_initrd(&["e1000"], Format::Gzip));
    data.extend(main_initrd(&["ext4"], Format::Xz));
    data.extend([0u8; 64]);
    let image = initrd::read(write_temp(&data).path()).expect("concatenated initrd");
    assert_eq!(image.formats, [Format::Gzip, Format::Gzip, Format::Xz]);
    let modules: Vec<String> = image.module_names().into_iter().collect();
    assert_eq!(modules, ["ahci", "e1000", "ext4"]);
}

#[test]
fn initrd_reader_streams_large_members_and_multi_block_lz4() {
    // 9 MiB of data is more than one 8 MiB legacy LZ4 block.
    let archive = cpio(
        &["usr/lib/firmware/big.bin", "usr/lib/modules/x/ahci.ko"],
        9 << 20,
    );
    for format in [Format::Lz4Legacy, Format::Zstd, Format::Gzip] {
        let image = initrd::read(write_temp(&compress(format, &archive)).path())
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(
            image.members,
            ["usr/lib/firmware/big.bin", "usr/lib/modules/x/ahci.ko"],
            "{format:?}"
        );
    }
}

#[test]
fn initrd_reader_reports_truncated_garbage_and_unsupported_files_clearly() {
    let whole = main_initrd(&["ahci"], Format::Gzip);
    let cut = write_temp(&whole[..whole.len() / 2]);
    let err = initrd::read(cut.path()).expect_err("truncated gzip");
    let text = err.to_string();
    assert!(
        matches!(err, InitrdError::Corrupt { format: "gzip", .. }),
        "{text}"
    );
    assert!(text.contains(&cut.path().display().to_string()), "{text}");

    let cpio_cut = write_temp(&cpio(&["a/b/c.ko"], 4000)[..1000]);
    let text = initrd::read(cpio_cut.path())
        .expect_err("truncated cpio")
        .to_string();
    assert!(text.contains("cut off inside a member"), "{text}");

    let garbage = write_temp(b"GARBAGE, not an initramfs at all");
    let err = initrd::read(garbage.path()).expect_err("garbage");
    assert!(
        matches!(err, InitrdError::Unrecognised { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("47 41 52 42"), "{err}");

    let bzip2 = write_temp(b"BZh91AY&SY....");
    let err = initrd::read(bzip2.path()).expect_err("bzip2");
    assert!(
        matches!(
            err,
            InitrdError::Unsupported {
                format: "bzip2",
                ..
            }
        ),
        "{err}"
    );

    let empty = write_temp(&[0u8; 1024]);
    assert!(matches!(
        initrd::read(empty.path()),
        Err(InitrdError::Empty { .. })
    ));
}

// ---------------------------------------------------------------- whole checks

#[test]
fn a_good_debian_guest_is_all_ok_for_both_targets() {
    let guest = Guest::good();
    for target in [Target::Virtualbox, Target::Kvm] {
        let report = guest.check(target);
        assert!(report.is_ok(), "{report}");
        assert_all_ok(&report);
        for id in [
            "fstab.root",
            "boot.entry",
            "drivers.disk",
            "drivers.rootfs",
            "drivers.nic",
            "console.getty",
            "rclocal.metadata",
            "modprobe.xen-alias",
        ] {
            the(&report, id, Severity::Ok);
        }
    }
    let vbox = guest.check(Target::Virtualbox);
    assert!(the(&vbox, "drivers.disk", Severity::Ok)
        .message
        .contains("ahci, sd_mod"));
    assert!(the(&vbox, "drivers.nic", Severity::Ok)
        .message
        .contains("e1000"));
    let getty = &the(&vbox, "console.getty", Severity::Ok).message;
    assert!(getty.contains("tty1") && getty.contains("ttyS0"), "{getty}");
}

#[test]
fn a_zstd_initrd_with_early_microcode_passes_too() {
    let guest = Guest::good();
    let mut data = early_microcode();
    data.extend(main_initrd(
        &["ahci", "sd_mod", "virtio_blk", "virtio_pci"],
        Format::Zstd,
    ));
    guest.write_bytes(&format!("boot/initrd.img-{RELEASE}"), &data);
    for target in [Target::Virtualbox, Target::Kvm] {
        assert_all_ok(&guest.check(target));
    }
}

#[test]
fn a_xen_root_in_fstab_is_an_error_and_xen_swap_a_warning() {
    let guest = Guest::good();
    guest.write(
        "etc/fstab",
        "/dev/xvda1 / ext3 defaults 1 1\n/dev/xvda3 swap swap defaults 0 0\n",
    );
    let report = guest.check(Target::Virtualbox);
    let root = the(&report, "fstab.root", Severity::Error);
    assert!(
        root.message
            .starts_with("/etc/fstab:1: / is mounted from /dev/xvda1"),
        "{}",
        root.message
    );
    assert!(root.fix.as_deref().unwrap_or("").contains(UUID));
    let swap = the(&report, "fstab.xen-device", Severity::Warning);
    assert!(
        swap.message.starts_with("/etc/fstab:2:"),
        "{}",
        swap.message
    );
}

#[test]
fn a_root_named_otherwise_or_missing_in_fstab_is_an_error() {
    let guest = Guest::good();
    guest.write("etc/fstab", "LABEL=cloudimg-rootfs / ext4 defaults 0 0\n");
    let report = guest.check(Target::Kvm);
    assert!(the(&report, "fstab.root", Severity::Error)
        .message
        .contains("not the new root filesystem"));
    // The label and device name of the new filesystem are as good as its UUID.
    guest.write("etc/fstab", "LABEL=rootfs / ext4 defaults 0 0\n");
    the(&guest.check(Target::Kvm), "fstab.root", Severity::Ok);
    guest.write("etc/fstab", "/dev/sda1 / ext4 defaults 0 0\n");
    the(&guest.check(Target::Kvm), "fstab.root", Severity::Ok);
    guest.remove("etc/fstab");
    the(&guest.check(Target::Kvm), "fstab.root", Severity::Error);
}

#[test]
fn a_missing_initrd_is_an_error_naming_it() {
    let guest = Guest::good();
    guest.remove(&format!("boot/initrd.img-{RELEASE}"));
    let report = guest.check(Target::Virtualbox);
    let finding = the(&report, "boot.initrd", Severity::Error);
    assert!(finding
        .message
        .contains(&format!("/boot/initrd.img-{RELEASE} does not exist")));
    assert_eq!(
        finding.fix.as_deref(),
        Some(format!("run `update-initramfs -c -k {RELEASE}` in the guest").as_str())
    );
}

#[test]
fn a_xen_only_kernel_is_an_error() {
    let guest = Guest::good();
    guest.write("boot/vmlinuz-2.6.18-348.el5xen", "xen kernel");
    guest.write("boot/initrd-2.6.18-348.el5xen.img", "");
    let mut input = guest.input(Target::Kvm);
    input.boot_entries = vec![BootEntry {
        title: "CentOS (2.6.18-348.el5xen)".to_owned(),
        kernel: "/boot/vmlinuz-2.6.18-348.el5xen".to_owned(),
        initrd: Some("/boot/initrd-2.6.18-348.el5xen.img".to_owned()),
        cmdline: "ro root=/dev/sda1".to_owned(),
    }];
    let report = run(&input).expect("check runs");
    let finding = the(&report, "boot.xen-kernel", Severity::Error);
    assert!(
        finding.message.contains("2.6.18-348.el5xen"),
        "{}",
        finding.message
    );
    assert!(finding.message.contains("KVM"), "{}", finding.message);
}

#[test]
fn a_xen_root_on_the_kernel_command_line_is_an_error() {
    let guest = Guest::good();
    let mut input = guest.input(Target::Virtualbox);
    input.boot_entries = vec![BootEntry {
        title: "cloud".to_owned(),
        kernel: "/vmlinuz".to_owned(),
        initrd: Some(format!("/boot/initrd.img-{RELEASE}")),
        cmdline: "root=/dev/xvda1 ro console=hvc0".to_owned(),
    }];
    let report = run(&input).expect("check runs");
    assert!(the(&report, "boot.root-arg", Severity::Error)
        .message
        .contains("root=/dev/xvda1"));
    the(&report, "console.kernel", Severity::Warning);
    // The kernel behind the /vmlinuz link was found and its drivers checked.
    the(&report, "drivers.disk", Severity::Ok);
}

#[test]
fn gettys_on_xen_consoles_are_errors() {
    let guest = Guest::good();
    guest.link(
        "/lib/systemd/system/serial-getty@.service",
        "etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
    );
    let report = guest.check(Target::Virtualbox);
    let finding = the(&report, "console.xen-getty", Severity::Error);
    assert!(finding.message.starts_with(
        "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service: a getty runs on hvc0"
    ));
    the(&report, "console.getty", Severity::Ok);

    // The seed's CentOS 5 inittab: mingetty on tty1-6 and on xvc0 (line 52).
    let guest = Guest::good();
    guest.remove("etc/systemd/system/getty.target.wants/getty@tty1.service");
    guest.remove("usr/lib/systemd/systemd");
    guest.write("etc/inittab", &centos5_inittab());
    let report = guest.check(Target::Virtualbox);
    let finding = the(&report, "console.xen-getty", Severity::Error);
    assert!(
        finding
            .message
            .starts_with("/etc/inittab:52: a getty runs on xvc0"),
        "{}",
        finding.message
    );
    assert_eq!(
        finding.fix.as_deref(),
        Some("delete line 52 of /etc/inittab (or comment it out)")
    );
    assert!(the(&report, "console.getty", Severity::Ok)
        .message
        .contains("login prompts on tty1, tty2, tty3, tty4, tty5, tty6 (/etc/inittab)"));
}

#[test]
fn vendor_getty_links_count_once_on_a_merged_usr() {
    let guest = Guest::good();
    guest.remove("etc/systemd/system/getty.target.wants/getty@tty1.service");
    guest.link(
        "../getty@.service",
        "usr/lib/systemd/system/getty.target.wants/getty@tty1.service",
    );
    let report = guest.check(Target::Kvm);
    let message = &the(&report, "console.getty", Severity::Ok).message;
    assert_eq!(
        message.matches("getty.target.wants").count(),
        1,
        "{message}"
    );
}

#[test]
fn masked_gettys_do_not_count() {
    let guest = Guest::good();
    guest.link("/dev/null", "etc/systemd/system/getty@tty1.service");
    guest.link(
        "/lib/systemd/system/serial-getty@.service",
        "etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
    );
    guest.link("/dev/null", "etc/systemd/system/serial-getty@.service");
    let report = guest.check(Target::Kvm);
    assert_eq!(report.with_id("console.xen-getty").count(), 0, "{report}");
    // Left: the serial getty systemd starts on console=ttyS0.
    let message = &the(&report, "console.getty", Severity::Ok).message;
    assert!(!message.contains("tty1"), "{message}");
    assert!(message.starts_with("login prompts on ttyS0"), "{message}");
}

#[test]
fn no_getty_at_all_is_a_warning() {
    let guest = Guest::good();
    guest.remove("etc/systemd/system/getty.target.wants/getty@tty1.service");
    guest.remove("usr/lib/systemd/systemd");
    let report = guest.check(Target::Kvm);
    assert!(report.is_ok(), "a warning is not an error:\n{report}");
    the(&report, "console.getty", Severity::Warning);
}

#[test]
fn a_metadata_call_in_rc_local_is_an_error_with_its_line() {
    let guest = Guest::good();
    guest.remove("etc/rc.local");
    guest.write(
        "etc/rc.d/rc.local",
        "#!/bin/sh\ntouch /var/lock/subsys/local\n# curl http://169.254.169.254/ (commented)\n\
         curl --retry 30 -m 600 http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key > /root/.ssh/authorized_keys\n",
    );
    // RHEL's /etc/rc.local is a link to rc.d/rc.local: one finding, not two.
    guest.link("rc.d/rc.local", "etc/rc.local");
    let report = guest.check(Target::Virtualbox);
    let finding = the(&report, "rclocal.metadata", Severity::Error);
    assert!(finding
        .message
        .starts_with("/etc/rc.local:4: calls the cloud metadata service"));
    assert_eq!(
        finding.fix.as_deref(),
        Some("comment out line 4 of /etc/rc.local")
    );
}

#[test]
fn xen_driver_aliases_are_errors_with_the_target_replacement() {
    let guest = Guest::good();
    guest.write(
        "etc/modprobe.conf",
        "alias scsi_hostadapter xenblk\nalias eth0 xennet\n",
    );
    let report = guest.check(Target::Virtualbox);
    let fixes: Vec<&str> = report
        .with_id("modprobe.xen-alias")
        .filter_map(|f| f.fix.as_deref())
        .collect();
    assert_eq!(
        fixes,
        [
            "change line 1 to `alias scsi_hostadapter ahci`",
            "change line 2 to `alias eth0 e1000`"
        ]
    );
    let kvm = guest.check(Target::Kvm);
    assert!(kvm
        .with_id("modprobe.xen-alias")
        .any(|f| f.message.starts_with("/etc/modprobe.conf:1:")));
    assert!(kvm
        .with_id("modprobe.xen-alias")
        .any(|f| f.fix.as_deref() == Some("change line 1 to `alias scsi_hostadapter virtio_blk`")));
}

#[test]
fn an_initrd_without_ahci_fails_virtualbox_but_passes_kvm() {
    let guest = Guest::good();
    guest.write_bytes(
        &format!("boot/initrd.img-{RELEASE}"),
        &main_initrd(&["virtio_blk", "virtio_pci", "sd_mod"], Format::Xz),
    );
    let vbox = guest.check(Target::Virtualbox);
    let finding = the(&vbox, "drivers.disk", Severity::Error);
    assert!(
        finding.message.contains("lacks ahci"),
        "{}",
        finding.message
    );
    // ahci.ko is not on the guest's disk either: a rebuild cannot help.
    assert!(finding
        .fix
        .as_deref()
        .unwrap_or("")
        .contains("no ahci module at all"));

    guest.write(&format!("{MODULES}/drivers/ata/ahci.ko"), "module");
    let vbox = guest.check(Target::Virtualbox);
    assert_eq!(
        the(&vbox, "drivers.disk", Severity::Error).fix.as_deref(),
        Some(format!(
            "add ahci (one per line) to /etc/initramfs-tools/modules, then run `update-initramfs -u -k {RELEASE}` in the guest"
        ).as_str())
    );
    assert_all_ok(&guest.check(Target::Kvm));
}

#[test]
fn a_missing_nic_driver_is_an_error_for_its_target_only() {
    let guest = Guest::good();
    guest.remove(&format!(
        "{MODULES}/drivers/net/ethernet/intel/e1000/e1000.ko"
    ));
    let vbox = guest.check(Target::Virtualbox);
    assert!(the(&vbox, "drivers.nic", Severity::Error)
        .message
        .contains("no e1000 driver"));
    assert_all_ok(&guest.check(Target::Kvm));
    // Built in (config `=y`) is as good as a module file.
    guest.write(&format!("boot/config-{RELEASE}"), "CONFIG_E1000=y\n");
    assert!(the(
        &guest.check(Target::Virtualbox),
        "drivers.nic",
        Severity::Ok
    )
    .message
    .contains("built in"));
}

#[test]
fn absolute_links_resolve_inside_the_guest_never_on_the_host() {
    let host_file = "/etc/passwd";
    assert!(Path::new(host_file).exists(), "the test needs a host file");
    let guest = Guest::good();
    guest.link(host_file, &format!("boot/vmlinuz-{RELEASE}"));
    guest.link(
        "../../../../../../etc/hostname",
        &format!("boot/initrd.img-{RELEASE}"),
    );
    let report = guest.check(Target::Kvm);
    let kernel = the(&report, "boot.kernel", Severity::Error);
    assert!(kernel
        .message
        .contains(&format!("kernel /boot/vmlinuz-{RELEASE} does not exist")));

    let resolver = GuestRoot::new(guest.dir.path());
    assert_eq!(
        resolver
            .resolve(&format!("/boot/initrd.img-{RELEASE}"))
            .expect("resolve"),
        None
    );
    guest.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    assert_eq!(
        resolver.resolve("/vmlinuz").expect("resolve"),
        Some(guest.path("etc/passwd"))
    );
}

#[test]
fn an_initrd_that_is_a_fifo_is_an_error_not_a_hang() {
    let guest = Guest::good();
    guest.mkdir("dev");
    let status = Command::new("mkfifo")
        .arg(guest.path("dev/initctl"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    guest.link("/dev/initctl", &format!("boot/initrd.img-{RELEASE}"));
    let report = guest.check(Target::Kvm);
    let finding = the(&report, "drivers.initrd", Severity::Error);
    assert!(
        finding.message.contains("not a regular file"),
        "{}",
        finding.message
    );
}

#[test]
fn a_centos5_cloud_guest_from_the_seed_yields_every_trouble() {
    let guest = Guest {
        dir: tempfile::tempdir().expect("guest dir"),
    };
    let xen = "2.6.18-348.3.1.el5xen";
    guest.write("etc/fstab", "/dev/xvda1 / ext3 defaults 1 1\n");
    guest.write("etc/inittab", &centos5_inittab());
    guest.write(
        "etc/modprobe.conf",
        "alias scsi_hostadapter xenblk\nalias eth0 xennet\n",
    );
    guest.write(
        "etc/rc.d/rc.local",
        "touch /var/lock/subsys/local\nwget -q -O /tmp/ud http://169.254.169.254/latest/user-data\n",
    );
    guest.link("rc.d/rc.local", "etc/rc.local");
    guest.write("sbin/mkinitrd", "#!/bin/bash\n");
    guest.write(&format!("boot/vmlinuz-{xen}"), "xen kernel");
    guest.write_bytes(
        &format!("boot/initrd-{xen}.img"),
        &compress(
            Format::Gzip,
            &cpio(&["lib/xenblk.ko", "lib/ext3.ko", "init"], 64),
        ),
    );
    guest.write(
        "boot/grub/grub.conf",
        &format!(
            "default=0\ntitle CentOS ({xen})\n\troot (hd0,0)\n\tkernel /boot/vmlinuz-{xen} ro root=/dev/xvda1\n\
             \tinitrd /boot/initrd-{xen}.img\n"
        ),
    );
    guest.link("../boot/grub/grub.conf", "etc/grub.conf");
    let entries = discover_boot_entries(&GuestRoot::new(guest.dir.path())).expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kernel, format!("/boot/vmlinuz-{xen}"));

    let report = guest.check(Target::Virtualbox);
    for id in [
        "fstab.root",
        "boot.xen-kernel",
        "boot.root-arg",
        "console.xen-getty",
        "rclocal.metadata",
    ] {
        the(&report, id, Severity::Error);
    }
    assert_eq!(report.with_id("modprobe.xen-alias").count(), 2);
    assert!(!report.is_ok());

    // Human and JSON renderings.
    let text = report.render(false);
    assert!(
        text.lines().any(|l| l.starts_with("✘ ERROR fstab.root")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("fix: ")),
        "{text}"
    );
    assert!(text.trim_end().ends_with("ok"), "{text}");
    let json = serde_json::to_value(&report).expect("json");
    let first = &json["findings"][0];
    assert_eq!(first["id"], "fstab.root");
    assert_eq!(first["severity"], "error");
    assert!(first["fix"].is_string());
}

/// A filesystem image mounted read-only (loop) for as long as the guard lives.
struct ReadOnlyMount {
    dir: tempfile::TempDir,
}

impl ReadOnlyMount {
    fn new(image: &Path) -> ReadOnlyMount {
        let dir = tempfile::tempdir().expect("mount point");
        // `noload`: no journal replay, so the fixture is never written.
        let status = Command::new("mount")
            .args(["-o", "ro,loop,noload"])
            .arg(image)
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mount {} failed", image.display());
        ReadOnlyMount { dir }
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        // A `-o loop` mount frees its loop device on umount.
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The real Debian 12 cloud instance of tests/fixtures: initramfs-tools initrd,
/// the cloud kernel (virtio but no AHCI or e1000), a getty on hvc0, fstab on xvda1
/// and a metadata curl in rc.local.
#[test]
fn the_debian_cloud_fixture_fails_virtualbox_for_the_documented_reasons() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/build-debian.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("build-debian.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = PathBuf::from(stdout.lines().last().expect("the image path"));
    let mount = ReadOnlyMount::new(&image);

    let input = |target| CheckInput {
        root: mount.dir.path().to_owned(),
        fs_uuid: UUID.to_owned(),
        fs_label: None,
        device: "/dev/sda1".to_owned(),
        target,
        boot_entries: vec![BootEntry {
            title: "Debian cloud kernel".to_owned(),
            kernel: "/vmlinuz".to_owned(),
            initrd: Some("/initrd.img".to_owned()),
            cmdline: format!("root=UUID={UUID} ro console=tty0 console=ttyS0,115200"),
        }],
    };
    let vbox = run(&input(Target::Virtualbox)).expect("check runs");
    for id in [
        "fstab.root",
        "drivers.disk",
        "drivers.nic",
        "console.xen-getty",
        "rclocal.metadata",
    ] {
        the(&vbox, id, Severity::Error);
    }
    the(&vbox, "boot.entry", Severity::Ok);
    the(&vbox, "drivers.rootfs", Severity::Ok);
    // getty@tty1 is masked there; systemd still serves the console= serial port.
    let getty = &the(&vbox, "console.getty", Severity::Ok).message;
    assert!(
        getty.starts_with("login prompts on ttyS0") && !getty.contains("tty1"),
        "{getty}"
    );

    let kvm = run(&input(Target::Kvm)).expect("check runs");
    for id in ["drivers.disk", "drivers.rootfs", "drivers.nic"] {
        the(&kvm, id, Severity::Ok);
    }
}

#[test]
fn e2fsck_results_report_like_other_findings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("fs.img");
    fs::write(&image, vec![0u8; 8 << 20]).expect("image");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .status()
        .expect("mkfs.ext4");
    assert!(status.success());
    let fsck = |image: &Path| {
        let out = Command::new("e2fsck")
            .args(["-f", "-n"])
            .arg(image)
            .output()
            .expect("e2fsck");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Finding::from_fsck(out.status.code().unwrap_or(-1), &text)
    };
    assert_eq!(fsck(&image).severity, Severity::Ok);

    // Zero the first block group's descriptors and inode table start: damage e2fsck cannot ignore.
    let mut data = fs::read(&image).expect("read image");
    data[4096..4096 * 64].fill(0);
    fs::write(&image, data).expect("damage image");
    let damaged = fsck(&image);
    assert_eq!(damaged.severity, Severity::Error, "{damaged:?}");
    assert!(damaged.fix.is_some());
}

/// The seed's CentOS 5 (Xen) /etc/inittab: `xvc0:2345:respawn:/sbin/mingetty xvc0`
/// is line 52, as in the seed.
fn centos5_inittab() -> String {
    let mut lines: Vec<String> = (1..=42).map(|n| format!("# comment {n}")).collect();
    for tty in 1..=6 {
        lines.push(format!("{tty}:2345:respawn:/sbin/mingetty tty{tty}"));
    }
    lines.push(String::new());
    lines.push("# Run xdm in runlevel 5".to_owned());
    lines.push("x:5:respawn:/etc/X11/prefdm -nodaemon".to_owned());
    lines.push("xvc0:2345:respawn:/sbin/mingetty xvc0".to_owned());
    lines.join("\n") + "\n"
}

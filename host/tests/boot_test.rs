//! Boot test: qemu's command line per target, and real boots under qemu (TCG): a disk
//! SeaBIOS cannot boot fails fast with its console output, and the Debian cloud fixture's
//! own kernel, booted directly, reaches a login where commands run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rehost::boot_test::{
    self, Accel, BootTestError, BootTestOptions, DirectKernel, DiskFormat, Failure, Target,
};

const FIXTURE_PASSWORD: &str = "rehost";

fn args_of(opts: &BootTestOptions) -> Vec<String> {
    boot_test::qemu_args(opts)
        .into_iter()
        .map(|a: OsString| a.into_string().expect("test arguments are UTF-8"))
        .collect()
}

/// Whether `flag` is immediately followed by `value` somewhere in `args`.
fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[test]
fn virtualbox_target_boots_from_ahci_with_an_e1000() {
    let mut opts = BootTestOptions::new("/images/out.vmdk", DiskFormat::Vmdk, "pw");
    opts.accel = Accel::Tcg;
    let args = args_of(&opts);
    assert!(has_pair(&args, "-device", "ahci,id=ahci"), "{args:?}");
    assert!(
        has_pair(&args, "-device", "ide-hd,drive=d0,bus=ahci.0"),
        "{args:?}"
    );
    assert!(has_pair(&args, "-netdev", "user,id=n0"), "{args:?}");
    // No NIC option ROM: VirtualBox does not network-boot by default, and iPXE would
    // delay "No bootable device".
    assert!(
        has_pair(&args, "-device", "e1000,netdev=n0,romfile="),
        "{args:?}"
    );
    assert!(
        has_pair(
            &args,
            "-drive",
            "if=none,id=d0,file=/images/out.vmdk,format=vmdk"
        ),
        "{args:?}"
    );
    assert!(
        has_pair(&args, "-accel", "tcg") && has_pair(&args, "-cpu", "max"),
        "{args:?}"
    );
    assert!(has_pair(&args, "-m", "1024"), "{args:?}");
    assert!(has_pair(&args, "-serial", "chardev:console"), "{args:?}");
    for flag in ["-snapshot", "-nographic", "-nodefaults", "-no-reboot"] {
        assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
    }
    assert!(
        !args.iter().any(|a| a.contains("virtio") || a == "-kernel"),
        "{args:?}"
    );
}

#[test]
fn kvm_target_uses_virtio_disk_and_nic() {
    let mut opts = BootTestOptions::new("/images/out.qcow2", DiskFormat::Qcow2, "pw");
    opts.target = Target::Kvm;
    opts.accel = Accel::Kvm;
    opts.memory_mib = 2048;
    let args = args_of(&opts);
    assert!(
        has_pair(&args, "-device", "virtio-blk-pci,drive=d0"),
        "{args:?}"
    );
    assert!(
        has_pair(&args, "-device", "virtio-net-pci,netdev=n0,romfile="),
        "{args:?}"
    );
    assert!(
        has_pair(&args, "-accel", "kvm") && has_pair(&args, "-cpu", "host"),
        "{args:?}"
    );
    assert!(has_pair(&args, "-m", "2048"), "{args:?}");
    assert!(
        !args
            .iter()
            .any(|a| a.contains("ahci") || a.contains("e1000")),
        "{args:?}"
    );
}

#[test]
fn direct_kernel_boot_passes_kernel_initrd_and_command_line() {
    let mut opts = BootTestOptions::new("/images/root,fs.ext4", DiskFormat::Raw, "pw");
    opts.direct_kernel = Some(DirectKernel {
        kernel: "/k/vmlinuz".into(),
        initrd: Some("/k/initrd.img".into()),
        append: "root=/dev/vda console=ttyS0".into(),
    });
    let args = args_of(&opts);
    assert!(has_pair(&args, "-kernel", "/k/vmlinuz"), "{args:?}");
    assert!(has_pair(&args, "-initrd", "/k/initrd.img"), "{args:?}");
    assert!(
        has_pair(&args, "-append", "root=/dev/vda console=ttyS0"),
        "{args:?}"
    );
    // A comma in a path is doubled, or qemu would read the rest as another option.
    assert!(
        has_pair(
            &args,
            "-drive",
            "if=none,id=d0,file=/images/root,,fs.ext4,format=raw"
        ),
        "{args:?}"
    );
}

#[test]
fn options_default_to_virtualbox_and_a_log_beside_the_disk() {
    let opts = BootTestOptions::new("/images/out.vdi", DiskFormat::Vdi, "pw");
    assert_eq!(opts.target, Target::Virtualbox);
    assert_eq!(opts.memory_mib, 1024);
    assert_eq!(opts.timeout, Duration::from_secs(600));
    assert_eq!(opts.user, "root");
    assert_eq!(opts.console_log, Path::new("/images/out.vdi.console.log"));
}

#[test]
fn disk_formats_parse_and_follow_extensions() {
    for (name, format) in [
        ("raw", DiskFormat::Raw),
        ("qcow2", DiskFormat::Qcow2),
        ("vmdk", DiskFormat::Vmdk),
        ("vdi", DiskFormat::Vdi),
    ] {
        assert_eq!(name.parse::<DiskFormat>(), Ok(format));
        assert_eq!(format.to_string(), name);
    }
    assert!("ova".parse::<DiskFormat>().is_err());
    assert_eq!(
        DiskFormat::from_path(Path::new("a/b.QCOW2")),
        Some(DiskFormat::Qcow2)
    );
    assert_eq!(
        DiskFormat::from_path(Path::new("root.ext4")),
        Some(DiskFormat::Raw)
    );
    assert_eq!(DiskFormat::from_path(Path::new("disk.ova")), None);
    assert_eq!("kvm".parse::<Target>(), Ok(Target::Kvm));
}

#[test]
fn bare_filesystem_is_not_bootable_and_fails_fast_with_console_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("bare.ext4");
    run_ok(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-F"])
            .arg(&image)
            .arg("64M"),
    );

    let mut opts = BootTestOptions::new(&image, DiskFormat::Raw, FIXTURE_PASSWORD);
    opts.accel = Accel::Tcg;
    opts.timeout = Duration::from_secs(60);
    opts.console_log = dir.path().join("console.log");
    let err = boot_test::run(&opts).expect_err("a bare filesystem has no boot code");

    let message = err.to_string();
    assert!(message.contains("no login prompt"), "{message}");
    assert!(message.contains("No bootable device"), "{message}");
    assert!(
        message.contains(&opts.console_log.display().to_string()),
        "{message}"
    );
    match err {
        BootTestError::Failed {
            failure: Failure::NoBootableDevice,
            report,
            ..
        } => {
            assert!(!report.reached_login);
            let log = std::fs::read_to_string(&report.console_log).expect("console log");
            assert!(log.contains("SeaBIOS"), "{log}");
        }
        other => panic!("expected NoBootableDevice, got {other:?}"),
    }
}

#[test]
fn debian_fixture_kernel_boots_to_a_login_that_runs_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (image, direct) = debian_direct_boot(dir.path());
    let mut opts = BootTestOptions::new(&image, DiskFormat::Raw, FIXTURE_PASSWORD);
    opts.target = Target::Kvm;
    opts.accel = Accel::Tcg;
    opts.direct_kernel = Some(direct);
    opts.console_log = dir.path().join("console.log");
    opts.commands = vec![
        "cat /etc/debian_version".into(),
        "uname -r".into(),
        "sh -c 'exit 3'".into(),
        "echo to-stdout; echo to-stderr >&2".into(),
        "true".into(),
    ];

    let report = boot_test::run(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.reached_login);
    assert!(report.seconds_to_login.is_some_and(|s| s > 0.0));
    let got: Vec<(&str, i32)> = report
        .commands
        .iter()
        .map(|c| (c.output.as_str(), c.status))
        .collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got[0].0.starts_with("12."), "{got:?}");
    assert_eq!(got[0].1, 0);
    assert!(got[1].0.ends_with("-cloud-amd64\n"), "{got:?}");
    assert_eq!(got[2], ("", 3));
    assert_eq!(got[3], ("to-stdout\nto-stderr\n", 0));
    assert_eq!(got[4], ("", 0));
    let json = serde_json::to_value(&report).expect("report serializes");
    assert_eq!(json["commands"][2]["status"], 3);
    let log = std::fs::read_to_string(&report.console_log).expect("console log");
    assert!(
        log.contains("login: "),
        "console log lacks the login prompt"
    );
}

#[test]
fn wrong_password_is_reported_after_reaching_login() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (image, direct) = debian_direct_boot(dir.path());
    let mut opts = BootTestOptions::new(&image, DiskFormat::Raw, "not-the-password");
    opts.target = Target::Kvm;
    opts.accel = Accel::Tcg;
    opts.direct_kernel = Some(direct);
    opts.console_log = dir.path().join("console.log");

    match boot_test::run(&opts) {
        Err(BootTestError::Failed {
            failure: Failure::LoginRejected { user },
            report,
            tail,
            ..
        }) => {
            assert_eq!(user, "root");
            assert!(report.reached_login);
            assert!(tail.contains("Login incorrect"), "{tail}");
        }
        other => panic!("expected LoginRejected, got {other:?}"),
    }
}

#[test]
fn kernel_panic_fails_early_with_the_panic_in_the_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (image, mut direct) = debian_direct_boot(dir.path());
    // Without its initrd the cloud kernel has no virtio_blk driver, so no root fs.
    direct.initrd = None;
    let mut opts = BootTestOptions::new(&image, DiskFormat::Raw, FIXTURE_PASSWORD);
    opts.target = Target::Kvm;
    opts.accel = Accel::Tcg;
    opts.direct_kernel = Some(direct);
    opts.console_log = dir.path().join("console.log");

    let err = boot_test::run(&opts).expect_err("no root filesystem");
    let message = err.to_string();
    assert!(message.contains("no login prompt"), "{message}");
    assert!(
        message.contains("VFS: Unable to mount root fs"),
        "{message}"
    );
    assert!(
        matches!(
            err,
            BootTestError::Failed {
                failure: Failure::KernelPanic,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn timeout_names_what_it_waited_for_and_quotes_the_console() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (image, mut direct) = debian_direct_boot(dir.path());
    // A guest that boots but never offers a login: its init only reads the console.
    direct.append.push_str(" init=/bin/cat");
    let mut opts = BootTestOptions::new(&image, DiskFormat::Raw, FIXTURE_PASSWORD);
    opts.target = Target::Kvm;
    opts.accel = Accel::Tcg;
    opts.timeout = Duration::from_secs(20);
    opts.direct_kernel = Some(direct);
    opts.console_log = dir.path().join("console.log");

    let err = boot_test::run(&opts).expect_err("init=/bin/cat never offers a login");
    let message = err.to_string();
    assert!(message.contains("no login prompt"), "{message}");
    assert!(message.contains("within 20 s"), "{message}");
    match err {
        BootTestError::Failed {
            failure: Failure::NoLoginPrompt { .. },
            tail,
            report,
            ..
        } => {
            assert!(!report.reached_login);
            assert!(tail.lines().count() > 10, "{tail}");
            assert!(message.contains(&tail), "the message quotes the tail");
        }
        other => panic!("expected NoLoginPrompt, got {other:?}"),
    }
}

/// The Debian cloud fixture plus its own kernel and initrd (read out with debugfs), and
/// the command line that boots them with the image as the virtio root disk.
fn debian_direct_boot(dir: &Path) -> (PathBuf, DirectKernel) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/build-debian.sh");
    let out = run_ok(Command::new("bash").arg(&script));
    let image = PathBuf::from(
        out.lines()
            .last()
            .expect("build-debian.sh prints the image path"),
    );

    let listing = run_ok(
        Command::new("debugfs")
            .args(["-R", "ls -p /boot"])
            .arg(&image),
    );
    let name = |prefix: &str| {
        listing
            .lines()
            .filter_map(|l| l.split('/').nth(5))
            .find(|n| n.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}* in the fixture's /boot:\n{listing}"))
            .to_string()
    };
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    for (file, out) in [(name("vmlinuz-"), &kernel), (name("initrd.img-"), &initrd)] {
        let request = format!("dump /boot/{file} {}", out.display());
        run_ok(Command::new("debugfs").args(["-R", &request]).arg(&image));
        assert!(
            out.metadata().is_ok_and(|m| m.len() > 0),
            "debugfs did not dump {file}"
        );
    }
    let direct = DirectKernel {
        kernel,
        initrd: Some(initrd),
        append: "root=/dev/vda console=ttyS0".into(),
    };
    (image, direct)
}

fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

//! `rehost convert` end to end, through the real binary: bad inputs are clear
//! errors that leave nothing behind, and a converted cloud instance boots.
//! Needs root (loop devices, mounts), e2fsprogs, grub-pc-bin and qemu (scripts/setup.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cache_dir, fixture, loops_on, rehost, sha256};

/// Asserts a conversion failed with `expected` in its error and left nothing.
fn assert_refused(input: &Path, extra: &[&str], expected: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.qcow2");
    let mut args = vec![
        "convert",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let result = rehost(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{input:?} {extra:?} was accepted");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in the output directory: {left:?}"
    );
    assert_eq!(loops_on(input), "", "loop device left on {input:?}");
}

fn ext4_from(tree: &Path, image: &Path) -> PathBuf {
    let status = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(tree)
        .arg(image)
        .arg("64M")
        .status()
        .unwrap();
    assert!(status.success());
    image.to_path_buf()
}

fn copy_of(src: &Path, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(status.success());
    dst
}

#[test]
fn bad_inputs_are_clear_errors_that_leave_nothing_behind() {
    let centos = fixture("build-centos5.sh");
    let dir = tempfile::tempdir().unwrap();

    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![0x5au8; 4 << 20]).unwrap();
    assert_refused(&junk, &[], "junk.img");

    let truncated = copy_of(&centos, dir.path(), "truncated.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    assert_refused(&truncated, &[], "truncated");

    let corrupt = copy_of(&centos, dir.path(), "corrupt.img");
    // The superblock's magic (0xEF53 at byte 1024 + 56), zeroed.
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::File::options().write(true).open(&corrupt).unwrap(),
        &[0, 0],
        1080,
    )
    .unwrap();
    assert_refused(&corrupt, &[], "corrupt.img");

    let before = sha256(&centos);
    assert_refused(
        &centos,
        &["--fixer", "xen-console", "--size", "100M"],
        "target too small",
    );
    assert_eq!(sha256(&centos), before, "the source image changed");

    // An output directory that cannot be written.
    let result = rehost(&[
        "convert",
        centos.to_str().unwrap(),
        "-o",
        "/proc/rehost-test/out.qcow2",
    ]);
    assert!(String::from_utf8_lossy(&result.stderr).contains("is not writable"));

    // A guest with no kernel in /boot, and one of an OS no stock fixer knows.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let nokernel = ext4_from(&tree, &dir.path().join("nokernel.img"));
    std::fs::write(
        tree.join("etc/os-release"),
        "ID=slackware\nVERSION_ID=\"15.0\"\n",
    )
    .unwrap();
    std::fs::write(tree.join("boot/vmlinuz-5.15.19"), b"kernel").unwrap();
    let unknown = ext4_from(&tree, &dir.path().join("unknown.img"));
    assert_refused(
        &unknown,
        &[],
        "no stock fixer applies to this guest (slackware 15.0)",
    );
    assert_refused(&nokernel, &[], "no kernel in /boot");
}

/// Converts the Debian fixture for `target`, then boots it on that hardware and
/// checks the root is the new partition and eth0 is up.
fn convert_and_boot(target: &str, format_ext: &str, root_device: &str) {
    let debian = fixture("build-debian.sh");
    let before = sha256(&debian);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join(format!("debian.{format_ext}"));
    let plan = out_dir.path().join("plan.txt");
    let result = rehost(&[
        "convert",
        debian.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--target",
        target,
        "--plan-out",
        plan.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "convert failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(sha256(&debian), before, "the source image changed");
    assert_eq!(loops_on(&debian), "");
    if target == "kvm" {
        // The fixture's cloud initrd already packs virtio: the boot below proves it
        // needed no rebuild, and none was made.
        assert!(
            stdout.contains("/etc/initramfs-tools/modules: added")
                && !stdout.contains("update-initramfs"),
            "{stdout}"
        );
    }
    let plan = std::fs::read_to_string(&plan).unwrap();
    assert!(
        plan.contains("-/dev/xvda1"),
        "the plan does not show the fstab change:\n{plan}"
    );

    let check = Command::new("qemu-img")
        .args(["check", output.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let boot = rehost(&[
        "boot-test",
        output.to_str().unwrap(),
        "--target",
        target,
        "--password",
        "rehost",
        "--run",
        "findmnt -n -o SOURCE /",
        "--run",
        "cat /sys/class/net/eth0/operstate",
    ]);
    let stdout = String::from_utf8_lossy(&boot.stdout);
    assert!(
        boot.status.success(),
        "boot test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&boot.stderr)
    );
    assert!(
        stdout.contains(root_device),
        "root is not the new partition {root_device}:\n{stdout}"
    );
    assert!(stdout.contains("\nup\n"), "eth0 is not up:\n{stdout}");
}

#[test]
fn a_debian_cloud_instance_converts_and_boots_on_virtualbox_hardware() {
    // The cloud kernel has no AHCI or e1000: the Debian fixer must install
    // linux-image-amd64 inside the guest for this to boot.
    convert_and_boot("virtualbox", "vdi", "/dev/sda1");
}

#[test]
fn a_debian_cloud_instance_converts_and_boots_on_kvm_hardware() {
    convert_and_boot("kvm", "qcow2", "/dev/vda1");
}

#[test]
fn the_unconverted_instance_does_not_boot() {
    let debian = fixture("build-debian.sh");
    let boot = rehost(&[
        "boot-test",
        debian.to_str().unwrap(),
        "--target",
        "kvm",
        "--timeout",
        "120",
    ]);
    assert!(!boot.status.success());
    let stderr = String::from_utf8_lossy(&boot.stderr);
    assert!(stderr.contains("No bootable device"), "{stderr}");
}

/// Runs `rehost plan` on `image` for VirtualBox and asserts it succeeds, prints
/// every one of `expected`, and leaves the image and the loop devices as they were.
fn assert_plan_shows(image: &Path, expected: &[&str]) {
    let before = sha256(image);
    let result = rehost(&["plan", image.to_str().unwrap(), "--target", "virtualbox"]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for expected in expected {
        assert!(
            stdout.contains(expected),
            "plan lacks {expected:?}:\n{stdout}"
        );
    }
    assert_eq!(sha256(image), before, "plan changed the source image");
    assert_eq!(loops_on(image), "");
}

#[test]
fn plan_shows_the_diffs_and_writes_nothing() {
    assert_plan_shows(
        &fixture("build-debian.sh"),
        &[
            "### fixer xen-console",
            "remove /etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
            "### fixer debian-cloud2kvm",
            "--- a/etc/fstab\n+++ b/etc/fstab\n",
            "-/dev/xvda1 / ext4 defaults 0 1\n+UUID=",
            "run /usr/bin/apt-get update",
        ],
    );
}

/// The moment of a conversion at which a test interrupts it.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// The work directory exists beside the output (copy, e2fsck, grow).
    WorkDirCreated,
    /// A loop device is attached to the work disk (the guest is mounted).
    GuestMounted,
}

impl Moment {
    fn reached(self, out_dir: &Path) -> bool {
        match self {
            Moment::WorkDirCreated => std::fs::read_dir(out_dir).unwrap().next().is_some(),
            Moment::GuestMounted => loop_backed_by(out_dir),
        }
    }
}

/// Whether a loop device is backed by a file below `dir`, read from sysfs: cheap
/// enough to poll every few milliseconds, unlike running losetup.
fn loop_backed_by(dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("loop/backing_file")).ok())
        .any(|backing| backing.starts_with(&*dir))
}

/// Starts a conversion, interrupts it with `signal` once it reaches `moment`, and
/// checks nothing is left: no output, no temporary directory, no loop device or
/// mount. Waiting for a moment rather than a fixed delay keeps the test honest on
/// fast and slow machines alike.
fn interrupt_conversion(signal: i32, moment: Moment) {
    let debian = fixture("build-debian.sh");
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.qcow2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rehost"))
        .args([
            "convert",
            debian.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--target",
            "kvm",
        ])
        .env("XDG_CACHE_HOME", cache_dir())
        .spawn()
        .unwrap();
    while !moment.reached(out_dir.path()) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the conversion ended ({status}) before {moment:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the conversion finished despite signal {signal} at {moment:?}"
    );
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind after signal {signal}: {left:?}"
    );
    assert_eq!(loops_on(&debian), "");
    assert_eq!(loops_on(out_dir.path()), "");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*out_dir.path().to_string_lossy()),
        "a mount outlived the command"
    );
}

#[test]
fn sigint_during_a_conversion_leaves_nothing_behind() {
    interrupt_conversion(libc::SIGINT, Moment::WorkDirCreated);
}

#[test]
fn sigterm_while_the_guest_is_mounted_leaves_nothing_behind() {
    interrupt_conversion(libc::SIGTERM, Moment::GuestMounted);
}

#[test]
fn plan_on_the_centos5_fixture_shows_the_seeds_edits() {
    assert_plan_shows(
        &fixture("build-centos5.sh"),
        &[
            "### fixer xen-console",
            "-xvc0:2345:respawn:/sbin/mingetty xvc0",
            "### fixer centos5-xen2kvm",
            "-alias scsi_hostadapter xenblk",
            "+alias scsi_hostadapter ata_piix",
            "run /usr/bin/yum -y install kernel mkinitrd grub",
        ],
    );
}

#[test]
fn a_fixer_failing_half_way_leaves_no_output_and_names_fixer_and_step() {
    let centos = fixture("build-centos5.sh");
    let hostile = Path::new(rehost::plugin::stock::WASM_DIR).join("hostile.wasm");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, "[fixer.hostile]\nattack = \"write-outside\"\n").unwrap();
    assert_refused(
        &centos,
        &["--fixer", "xen-console", "--fixer", hostile.to_str().unwrap(), "--config", config.to_str().unwrap()],
        "fixer hostile failed; no output was written: plugin hostile: `fix` failed: denied: plugin hostile: write /etc/shadow",
    );
}

#[test]
fn the_pipeline_file_can_narrow_what_a_fixer_may_touch() {
    let centos = fixture("build-centos5.sh");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    // The fixer asks to write /etc/modprobe.conf among others; this pipeline allows
    // it /etc/inittab only, so its first write elsewhere is refused.
    std::fs::write(&config, "fixers = [\"centos5-xen2kvm\"]\n[grants.centos5-xen2kvm]\nguest_read = [\"/**\"]\nguest_write = [\"/etc/inittab\"]\n").unwrap();
    let result = rehost(&[
        "plan",
        centos.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "the narrowed fixer was allowed everything"
    );
    assert!(
        stderr.contains("plugin centos5-xen2kvm")
            && stderr.contains("no write grant covers this path"),
        "{stderr}"
    );
}

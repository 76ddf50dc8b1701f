//! Guest access against the real thing: loop devices, mounts, namespaces, debugfs
//! (run as root). Nothing may be left behind, whatever happens to the process.
//!
//! The whole test process enters its own mount namespace before libtest starts its
//! threads (see `PRIVATE_NAMESPACE`), exactly as the rehost binary does at start-up:
//! even if the test run is killed, its mounts vanish with it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, FileExt};
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use rehost::guest::exec::{ExecError, GuestCommand};
use rehost::guest::inspect::{
    inspect_guest, inspect_image, BootloaderKind, DirFiles, GuestReport, InspectError, Inspection,
    LayoutKind, XenIsmKind,
};
use rehost::guest::mount::{mount_image, FsType, MountError, MountOptions};
use rehost::guest::namespace::{enter_private_mount_namespace, NamespaceError};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Runs before `main`, while the process has one thread.
#[used]
#[link_section = ".init_array"]
static PRIVATE_NAMESPACE: extern "C" fn() = enter_namespace_before_main;

extern "C" fn enter_namespace_before_main() {
    if let Err(e) = enter_private_mount_namespace() {
        eprintln!("guest tests: {e}; mounts made by these tests may reach the host");
    }
}

/// Set in the child process of `nothing_left_after_sigkill`: the image it mounts.
const CHILD_IMAGE_VAR: &str = "REHOST_GUEST_TEST_CHILD_IMAGE";

// ---------------------------------------------------------------- helpers

/// Serialises the tests that mount or run guest commands, across test processes too:
/// a guest command's child starts with copies of this process's descriptors and
/// mounts, which would hold another test's mount (and loop device) for a moment.
fn serial() -> File {
    // This test file itself: always there, and nothing is left behind.
    let lock = File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guest.rs"))
        .expect("opening the test source to lock it");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("locking");
    lock
}

/// An e2fsprogs or util-linux tool, wherever it is (/sbin is not always on PATH).
fn tool(name: &str) -> Command {
    let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name));
    Command::new(path)
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("running a tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Makes an ext filesystem image of `size_mib` MiB holding `tree`.
fn mkfs(image: &Path, fstype: FsType, tree: &Path, size_mib: u32) {
    run_ok(
        tool("mke2fs")
            .args(["-q", "-F", "-t", fstype.as_str(), "-d"])
            .arg(tree)
            .arg(image)
            .arg(format!("{size_mib}M")),
    );
}

fn write(root: &Path, path: &str, contents: &str) {
    let full = root.join(path);
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    fs::write(full, contents).unwrap();
}

fn link(root: &Path, path: &str, target: &str) {
    let full = root.join(path);
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    symlink(target, full).unwrap();
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

/// Loop devices backed by `image`, as `losetup -j` lists them.
fn loops_of(image: &Path) -> String {
    String::from_utf8(run_ok(tool("losetup").arg("-j").arg(image))).unwrap()
}

/// Whether this process's mount table mentions `path`.
fn mounted_here(path: &Path) -> bool {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.contains(path.to_str().unwrap())
}

fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    run_ok(
        tool("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(image),
    )
}

fn read_only(fstype: FsType) -> MountOptions {
    MountOptions {
        fstype,
        offset: 0,
        length: None,
        read_only: true,
    }
}

/// A small ext4 image holding /hello.txt.
fn small_image(dir: &Path, fstype: FsType) -> PathBuf {
    let tree = dir.join("tree");
    write(&tree, "hello.txt", "hello from the guest\n");
    write(&tree, "etc/hostname", "guest\n");
    let image = dir.join(format!("{fstype}.img"));
    mkfs(&image, fstype, &tree, 16);
    image
}

/// The tiny busybox guest of tests/fixtures/mini-guest.sh.
fn mini_guest(dir: &Path) -> PathBuf {
    let root = dir.join("guest");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mini-guest.sh");
    run_ok(Command::new("sh").arg(script).arg(&root));
    root
}

/// Waits until a guest command has created `path`. Bounded only so that a broken
/// command fails the test instead of hanging it.
fn wait_for(path: &Path) {
    for _ in 0..6000 {
        if path.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

/// Asserts that neither a mount below `path` nor a loop device on `image` is left.
fn assert_released(path: &Path, image: &Path) {
    assert!(!mounted_here(path), "{} is still mounted", path.display());
    assert_eq!(
        loops_of(image),
        "",
        "a loop device still holds {}",
        image.display()
    );
}

// ---------------------------------------------------------------- namespace

#[test]
fn namespace_refuses_a_multithreaded_process() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = thread::spawn(move || rx.recv());
    let err = enter_private_mount_namespace().unwrap_err();
    assert!(
        matches!(err, NamespaceError::MultiThreaded { threads } if threads >= 2),
        "{err}"
    );
    assert!(err.to_string().contains("before any thread"), "{err}");
    tx.send(()).unwrap();
    other.join().unwrap().unwrap();
}

// ---------------------------------------------------------------- mount

#[test]
fn mounts_read_only_and_read_write() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let image = small_image(dir.path(), FsType::Ext4);

    let ro = mount_image(&image, &read_only(FsType::Ext4)).unwrap();
    assert!(ro.device().to_str().unwrap().starts_with("/dev/loop"));
    let hello = fs::read_to_string(ro.path().join("hello.txt")).unwrap();
    assert_eq!(hello, "hello from the guest\n");
    let denied = fs::write(ro.path().join("new.txt"), "x").unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EROFS));
    let loop_name = ro
        .device()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let loop_ro = fs::read_to_string(format!("/sys/block/{loop_name}/ro")).unwrap();
    assert_eq!(
        loop_ro.trim(),
        "1",
        "the loop device itself must be read-only"
    );
    let ro_path = ro.path().to_path_buf();
    ro.unmount().unwrap();
    assert!(!ro_path.exists(), "the mount point is removed");

    let rw = mount_image(
        &image,
        &MountOptions {
            read_only: false,
            ..read_only(FsType::Ext4)
        },
    )
    .unwrap();
    fs::write(rw.path().join("new.txt"), "written through the mount").unwrap();
    let rw_path = rw.path().to_path_buf();
    rw.unmount().unwrap();
    assert_eq!(
        debugfs_cat(&image, "/new.txt"),
        b"written through the mount"
    );
    assert_released(&rw_path, &image);
}

#[test]
fn read_only_mounts_leave_the_image_unchanged() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let ext3 = small_image(dir.path(), FsType::Ext3);
    let ext4 = small_image(dir.path(), FsType::Ext4);
    // A dirty journal: a committed transaction not yet replayed (needs_recovery).
    let dirty = dir.path().join("dirty.img");
    fs::copy(&ext4, &dirty).unwrap();
    let block = dir.path().join("block");
    fs::write(&block, [0x5a; 4096]).unwrap();
    let script = format!("jo\njw -b 300 {}\njc\n", block.display());
    let mut debugfs = tool("debugfs")
        .args(["-w", "-f", "-"])
        .arg(&dirty)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    debugfs
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(debugfs.wait().unwrap().success());
    let stats = run_ok(tool("dumpe2fs").arg("-h").arg(&dirty));
    assert!(String::from_utf8_lossy(&stats).contains("needs_recovery"));

    for (image, fstype) in [
        (&ext3, FsType::Ext3),
        (&ext4, FsType::Ext4),
        (&dirty, FsType::Ext4),
    ] {
        let before = sha256(image);
        let mount = mount_image(image, &read_only(fstype)).unwrap();
        let hello = fs::read_to_string(mount.path().join("hello.txt")).unwrap();
        assert_eq!(hello, "hello from the guest\n");
        mount.unmount().unwrap();
        assert_eq!(sha256(image), before, "{} changed", image.display());
    }
}

#[test]
fn nothing_left_after_drop_error_or_panic() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let image = small_image(dir.path(), FsType::Ext4);

    let mount = mount_image(&image, &read_only(FsType::Ext4)).unwrap();
    let path = mount.path().to_path_buf();
    assert!(mounted_here(&path));
    assert!(loops_of(&image).contains(mount.device().to_str().unwrap()));
    drop(mount);
    assert_released(&path, &image);
    assert!(!path.exists());

    // Not a filesystem: attaching works, mounting fails, the device goes.
    let junk = dir.path().join("junk.img");
    fs::write(&junk, vec![0x42u8; 4 << 20]).unwrap();
    let err = mount_image(&junk, &read_only(FsType::Ext4)).unwrap_err();
    assert!(matches!(err, MountError::Mount { .. }), "{err}");
    assert!(err.to_string().contains("junk.img"), "{err}");
    assert_eq!(loops_of(&junk), "");

    let mut seen = None;
    let outcome = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let mount = mount_image(&image, &read_only(FsType::Ext4)).unwrap();
        seen = Some(mount.path().to_path_buf());
        panic!("a failure while the guest is mounted");
    }));
    assert!(outcome.is_err());
    assert_released(&seen.unwrap(), &image);
}

#[test]
fn busy_mount_is_reported_and_still_released() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let image = small_image(dir.path(), FsType::Ext4);
    let mount = mount_image(&image, &read_only(FsType::Ext4)).unwrap();
    let path = mount.path().to_path_buf();
    let open_file = File::open(path.join("hello.txt")).unwrap();
    // unmount() consumes the guard; on EBUSY its Drop detaches lazily.
    let err = mount.unmount().unwrap_err();
    assert!(matches!(err, MountError::Unmount { .. }), "{err}");
    assert!(!mounted_here(&path), "lazily detached from the tree");
    let mut text = String::new();
    (&open_file).read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello from the guest\n", "open files keep working");
    drop(open_file);
    assert_eq!(loops_of(&image), "", "the device goes with its last user");
}

/// The child half of `nothing_left_after_sigkill`; does nothing on its own.
#[test]
fn child_mounts_then_waits() {
    let Ok(image) = std::env::var(CHILD_IMAGE_VAR) else {
        return;
    };
    let mount = mount_image(Path::new(&image), &read_only(FsType::Ext4)).unwrap();
    println!(
        "MOUNTED {} {}",
        mount.device().display(),
        mount.path().display()
    );
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read(&mut [0u8]); // until killed
}

#[test]
fn nothing_left_after_sigkill() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let image = small_image(dir.path(), FsType::Ext4);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_mounts_then_waits",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_IMAGE_VAR, &image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // libtest prints "test NAME ... " before the test's own output on that line.
    let line = stdout
        .lines()
        .map(Result::unwrap)
        .find_map(|l| Some(l.split_once("MOUNTED ")?.1.to_string()))
        .expect("the child reports its mount");
    let (device, path) = line.split_once(' ').unwrap();
    let path = PathBuf::from(path);
    assert!(loops_of(&image).contains(device), "{device} is attached");
    assert!(
        !mounted_here(&path),
        "the child's mount lives in its own namespace"
    );

    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert_eq!(loops_of(&image), "", "{device} outlived its process");
    fs::remove_dir(&path).unwrap(); // the empty mount point is all that is left
}

// ---------------------------------------------------------------- exec

#[test]
fn exec_runs_inside_the_guest() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let root = mini_guest(dir.path());
    let out = GuestCommand::new(&root, ["/bin/sh", "-c", "echo hi; cat /proc/1/comm"])
        .run(None)
        .unwrap();
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The command is init of its own PID namespace (sh execs its last command).
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\ncat\n");

    let script = "test -e /proc/self/status && test -c /dev/null && test -d /sys/class \
                  && ls /bin/busybox && cat /proc/self/mountinfo";
    let out = GuestCommand::new(&root, ["sh", "-c", script])
        .run(None)
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mountpoints: BTreeSet<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split(' ').nth(4))
        .collect();
    for expected in ["/", "/proc", "/dev", "/sys", "/run"] {
        assert!(
            mountpoints.contains(expected),
            "{expected} missing in {mountpoints:?}"
        );
    }
    // The host's tree is not in the guest's namespace at all.
    let host_only: Vec<_> = mountpoints
        .iter()
        .filter(|m| !["/", "/proc", "/sys", "/run"].contains(m) && !m.starts_with("/dev"))
        .collect();
    assert!(
        host_only.is_empty(),
        "host mounts in the guest: {host_only:?}"
    );
    assert!(
        !mounted_here(&root),
        "the guest's mounts never reach rehost's namespace"
    );
}

fn interfaces(proc_net_dev: &str) -> BTreeSet<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .collect()
}

#[test]
fn exec_has_no_network_unless_granted() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let root = mini_guest(dir.path());
    let argv = ["cat", "/proc/net/dev"];
    let out = GuestCommand::new(&root, argv).run(None).unwrap();
    assert_eq!(
        interfaces(&String::from_utf8_lossy(&out.stdout)),
        BTreeSet::from(["lo".to_string()])
    );
    let out = GuestCommand::new(&root, ["ip", "link"]).run(None).unwrap();
    let links = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = links.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(listed.len(), 1, "{links}");
    assert!(listed[0].contains(" lo: <LOOPBACK>"), "lo is down: {links}");

    let out = GuestCommand::new(&root, argv)
        .network(true)
        .run(None)
        .unwrap();
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(interfaces(&String::from_utf8_lossy(&out.stdout)), host);
}

#[test]
fn exec_passes_argv_stdin_env_and_status() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let root = mini_guest(dir.path());
    let tricky = "$(touch /tmp/pwned); 'quoted' \"x\"";
    let out = GuestCommand::new(&root, ["sh", "-c", "printf '%s' \"$1\"", "sh", tricky])
        .run(None)
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), tricky);
    assert!(!root.join("tmp/pwned").exists());

    let out = GuestCommand::new(&root, ["cat"])
        .stdin("fed through stdin")
        .run(None)
        .unwrap();
    assert_eq!(out.stdout, b"fed through stdin");

    let out = GuestCommand::new(&root, ["env"])
        .env("LANG", "C")
        .run(None)
        .unwrap();
    let env: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let expected = [
        "HOME=/root",
        "LANG=C",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ];
    assert_eq!(env, expected.iter().map(|s| s.to_string()).collect());

    let out = GuestCommand::new(&root, ["sh", "-c", "echo oops >&2; exit 3"])
        .run(None)
        .unwrap();
    assert_eq!(
        (out.status.code(), out.stderr.as_slice()),
        (Some(3), &b"oops\n"[..])
    );

    let out = GuestCommand::new(&root, ["sh", "-c", "yes | head -c 100000"])
        .output_limit(1000)
        .run(None)
        .unwrap();
    assert_eq!((out.stdout.len(), out.stdout_dropped), (1000, 99_000));

    let err = GuestCommand::new(&root, ["/no/such/program"])
        .run(None)
        .unwrap_err();
    assert!(matches!(err, ExecError::Spawn { .. }), "{err}");
}

#[test]
fn exec_times_out_and_cancels() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let root = mini_guest(dir.path());
    // A background child too: killing must reach it (the whole PID namespace dies).
    let err = GuestCommand::new(&root, ["sh", "-c", "sleep 600 & sleep 600"])
        .timeout(Duration::from_secs(1))
        .run(None)
        .unwrap_err();
    assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");

    let cancel = AtomicBool::new(false);
    let started = root.join("tmp/started");
    let err = thread::scope(|s| {
        s.spawn(|| {
            wait_for(&started);
            cancel.store(true, Ordering::Relaxed);
        });
        GuestCommand::new(&root, ["sh", "-c", "touch /tmp/started; sleep 600"])
            .timeout(Duration::from_secs(120)) // only if cancelling failed
            .run(Some(&cancel))
            .unwrap_err()
    });
    assert!(matches!(err, ExecError::Cancelled { .. }), "{err}");
}

/// The host pid of the init of a PID namespace whose command line mentions `marker`.
fn guest_init_pid(marker: &str) -> Option<i32> {
    fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let is_init = status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1"));
        (is_init && String::from_utf8_lossy(&cmdline).contains(marker)).then_some(pid)
    })
}

#[test]
fn exec_reports_a_command_killed_from_outside() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let root = mini_guest(dir.path());
    let marker = root.to_str().unwrap();
    let cancel = AtomicBool::new(false);
    let (pid, out) = thread::scope(|s| {
        let run = s.spawn(|| {
            let script = "touch /tmp/started; sleep 600; exit 0"; // sh stays init
            GuestCommand::new(&root, ["sh", "-c", script, "sh", marker]).run(Some(&cancel))
        });
        wait_for(&root.join("tmp/started"));
        // As the OOM killer would: only SIGKILL reaches a namespace's init from outside.
        let pid = guest_init_pid(marker);
        match pid {
            Some(pid) => rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap(),
            None => cancel.store(true, Ordering::Relaxed),
        }
        (pid, run.join().unwrap())
    });
    assert!(pid.is_some(), "found no guest init running {marker}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.unwrap().status.signal(), Some(libc::SIGKILL));
}

#[test]
fn exec_mounts_never_reach_the_host() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let root = mini_guest(dir.path());
    let script = "touch /tmp/ready; while [ ! -e /tmp/go ]; do sleep 0.05; done";
    thread::scope(|s| {
        // The timeout only ends the command if the test fails before letting it go.
        let run = s.spawn(|| {
            GuestCommand::new(&root, ["sh", "-c", script])
                .timeout(Duration::from_secs(120))
                .run(None)
        });
        wait_for(&root.join("tmp/ready"));
        assert!(
            !mounted_here(&root),
            "a guest mount propagated while the command ran"
        );
        fs::write(root.join("tmp/go"), "").unwrap();
        assert!(run.join().unwrap().unwrap().success());
    });
    assert!(!mounted_here(&root));

    fs::remove_dir(root.join("proc")).unwrap();
    let err = GuestCommand::new(&root, ["true"]).run(None).unwrap_err();
    assert!(
        matches!(err, ExecError::MissingMountPoint { dir: "proc", .. }),
        "{err}"
    );
}

#[test]
fn exec_in_a_mounted_guest_leaves_it_unmountable() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let tree = mini_guest(dir.path());
    let image = dir.path().join("guest.img");
    mkfs(&image, FsType::Ext4, &tree, 32);
    let mount = mount_image(
        &image,
        &MountOptions {
            read_only: false,
            ..read_only(FsType::Ext4)
        },
    )
    .unwrap();
    let out = GuestCommand::new(
        mount.path(),
        ["sh", "-c", "echo made > /root/file; sleep 600 &"],
    )
    .run(None)
    .unwrap();
    assert!(out.success());
    let path = mount.path().to_path_buf();
    mount
        .unmount()
        .expect("nothing the command started still holds the guest");
    assert_released(&path, &image);
    assert_eq!(debugfs_cat(&image, "/root/file"), b"made\n");
}

// ---------------------------------------------------------------- inspect

/// A Debian 12 cloud instance as AWS runs it: usrmerged, with Xen-isms.
fn debian_tree(root: &Path) {
    write(root, "usr/lib/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n");
    link(root, "etc/os-release", "../usr/lib/os-release");
    write(root, "etc/debian_version", "12.5\n");
    link(root, "bin", "usr/bin");
    link(root, "lib", "usr/lib");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::copy("/bin/busybox", root.join("usr/bin/dash")).unwrap();
    link(root, "usr/bin/sh", "dash");
    let version = "6.1.0-18-cloud-amd64";
    write(root, &format!("boot/vmlinuz-{version}"), "kernel");
    write(root, &format!("boot/initrd.img-{version}"), "initrd");
    write(
        root,
        &format!("boot/config-{version}"),
        "CONFIG_XEN=y\nCONFIG_ATA=y\nCONFIG_SATA_AHCI=m\n",
    );
    write(root, "boot/grub/grub.cfg", "set timeout=1\n");
    write(
        root,
        "etc/fstab",
        "# /etc/fstab\n/dev/xvda1 / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n",
    );
    write(
        root,
        "usr/lib/systemd/system/serial-getty@.service",
        "[Unit]\n",
    );
    link(
        root,
        "etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
        "/lib/systemd/system/serial-getty@.service",
    );
    link(
        root,
        "etc/systemd/system/getty.target.wants/getty@tty1.service",
        "/lib/systemd/system/getty@.service",
    );
    write(root, "etc/rc.local", "#!/bin/sh\n# fetch the key\ncurl -s http://169.254.169.254/latest/meta-data/public-keys/ > /root/key\nexit 0\n");
    write(root, "etc/modprobe.d/blacklist.conf", "blacklist floppy\n");
}

const INITTAB: &str = "id:3:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n\
                       1:2345:respawn:/sbin/mingetty tty1\n# xvc0 was here\n\
                       xvc0:2345:respawn:/sbin/mingetty xvc0\n";

/// A CentOS 5 instance from Eucalyptus: no os-release, a xenified kernel.
fn centos5_tree(root: &Path) {
    write(root, "etc/redhat-release", "CentOS release 5.11 (Final)\n");
    write(root, "etc/inittab", INITTAB);
    write(
        root,
        "etc/modprobe.conf",
        "alias scsi_hostadapter xenblk\nalias eth0 xennet\n",
    );
    let version = "2.6.18-348.el5xen";
    write(root, &format!("boot/vmlinuz-{version}"), "kernel");
    write(root, &format!("boot/initrd-{version}.img"), "initrd");
    write(root, "boot/grub/grub.conf", "default=0\n");
    link(root, "boot/grub/menu.lst", "./grub.conf");
    write(root, "etc/fstab", "/dev/sda1 / ext3 defaults 1 1\n");
    write(
        root,
        "etc/rc.d/rc.local",
        "touch /var/lock/subsys/local\n/usr/local/bin/euca-get-credentials\n",
    );
    link(root, "etc/rc.local", "rc.d/rc.local");
    fs::create_dir_all(root.join("sbin")).unwrap();
    fs::copy("/bin/busybox", root.join("sbin/init")).unwrap();
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i386",
        other => other,
    }
}

fn check_debian(report: &GuestReport) {
    let os = &report.os;
    assert_eq!(os.id.as_deref(), Some("debian"));
    assert_eq!(os.version.as_deref(), Some("12"));
    assert_eq!(
        os.pretty_name.as_deref(),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(os.source.as_deref(), Some("/etc/os-release"));
    assert_eq!(
        os.arch.as_deref(),
        Some(host_arch()),
        "from /bin/sh -> usr/bin/dash"
    );
    assert_eq!(report.kernels.len(), 1);
    let k = &report.kernels[0];
    assert_eq!(k.version, "6.1.0-18-cloud-amd64");
    assert_eq!(k.image, "/boot/vmlinuz-6.1.0-18-cloud-amd64");
    assert_eq!(
        k.initrd.as_deref(),
        Some("/boot/initrd.img-6.1.0-18-cloud-amd64")
    );
    assert!(!k.xen_only, "a pv-ops kernel with SATA drivers");
    let loaders: Vec<_> = report
        .bootloaders
        .iter()
        .map(|b| (b.kind, b.path.as_str()))
        .collect();
    assert_eq!(loaders, [(BootloaderKind::Grub2, "/boot/grub/grub.cfg")]);
    let isms: Vec<_> = report
        .xen_isms
        .iter()
        .map(|x| (x.kind, x.file.as_str(), x.line))
        .collect();
    assert_eq!(
        isms,
        [
            (XenIsmKind::XvdDevice, "/etc/fstab", Some(2)),
            (
                XenIsmKind::XenConsole,
                "/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service",
                None
            ),
            (XenIsmKind::MetadataCall, "/etc/rc.local", Some(3)),
        ]
    );
    assert_eq!(
        report.xen_isms[1].text,
        "/lib/systemd/system/serial-getty@.service"
    );
}

fn check_centos5(report: &GuestReport) {
    let os = &report.os;
    assert_eq!(os.id.as_deref(), Some("centos"));
    assert_eq!(os.version.as_deref(), Some("5.11"));
    assert_eq!(
        os.pretty_name.as_deref(),
        Some("CentOS release 5.11 (Final)")
    );
    assert_eq!(os.source.as_deref(), Some("/etc/redhat-release"));
    assert_eq!(os.arch.as_deref(), Some(host_arch()), "from /sbin/init");
    assert_eq!(report.kernels.len(), 1);
    let k = &report.kernels[0];
    assert_eq!(k.version, "2.6.18-348.el5xen");
    assert_eq!(
        k.initrd.as_deref(),
        Some("/boot/initrd-2.6.18-348.el5xen.img")
    );
    assert!(k.xen_only);
    let loaders: Vec<_> = report
        .bootloaders
        .iter()
        .map(|b| (b.kind, b.path.as_str()))
        .collect();
    assert_eq!(
        loaders,
        [
            (BootloaderKind::GrubLegacy, "/boot/grub/grub.conf"),
            (BootloaderKind::GrubLegacy, "/boot/grub/menu.lst"),
        ]
    );
    let xvc0_line = INITTAB.lines().position(|l| l.starts_with("xvc0")).unwrap() + 1;
    let isms: Vec<_> = report
        .xen_isms
        .iter()
        .map(|x| (x.kind, x.file.as_str(), x.line, x.text.as_str()))
        .collect();
    assert_eq!(
        isms,
        [
            (
                XenIsmKind::XenConsole,
                "/etc/inittab",
                Some(xvc0_line),
                "xvc0:2345:respawn:/sbin/mingetty xvc0"
            ),
            (
                XenIsmKind::XenDriverAlias,
                "/etc/modprobe.conf",
                Some(1),
                "alias scsi_hostadapter xenblk"
            ),
            (
                XenIsmKind::XenDriverAlias,
                "/etc/modprobe.conf",
                Some(2),
                "alias eth0 xennet"
            ),
            (
                XenIsmKind::MetadataCall,
                "/etc/rc.local",
                Some(2),
                "/usr/local/bin/euca-get-credentials"
            ),
        ]
    );
}

fn guest_part(inspection: &Inspection) -> GuestReport {
    GuestReport {
        os: inspection.os.clone(),
        kernels: inspection.kernels.clone(),
        bootloaders: inspection.bootloaders.clone(),
        xen_isms: inspection.xen_isms.clone(),
    }
}

#[test]
fn inspects_a_debian_image_without_touching_it() {
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    debian_tree(&tree);
    let image = dir.path().join("debian.img");
    mkfs(&image, FsType::Ext4, &tree, 32);
    let before = sha256(&image);

    let inspection = inspect_image(&image).unwrap();
    assert_eq!(sha256(&image), before);
    assert_eq!(inspection.layout.kind, LayoutKind::Bare);
    assert_eq!(
        (inspection.layout.offset, inspection.layout.length),
        (0, 32 << 20)
    );
    let fs = &inspection.filesystem;
    assert_eq!(fs.fstype, FsType::Ext4);
    assert_eq!(fs.block_size * fs.block_count, 32 << 20);
    let blkid = run_ok(
        tool("blkid")
            .args(["-o", "value", "-s", "UUID"])
            .arg(&image),
    );
    assert_eq!(
        fs.uuid.as_deref(),
        Some(String::from_utf8_lossy(&blkid).trim())
    );
    check_debian(&guest_part(&inspection));
    // The same logic over the plain tree agrees.
    assert_eq!(
        inspect_guest(&DirFiles::new(&tree)),
        guest_part(&inspection)
    );

    let json = serde_json::to_value(&inspection).unwrap();
    assert_eq!(json["filesystem"]["fstype"], "ext4");
    assert_eq!(json["xen_isms"][0]["kind"], "xvd-device");
}

#[test]
fn inspects_a_centos5_image() {
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    centos5_tree(&tree);
    let image = dir.path().join("centos5.img");
    mkfs(&image, FsType::Ext3, &tree, 16);
    let inspection = inspect_image(&image).unwrap();
    assert_eq!(inspection.filesystem.fstype, FsType::Ext3);
    check_centos5(&guest_part(&inspection));
    assert_eq!(
        inspect_guest(&DirFiles::new(&tree)),
        guest_part(&inspection)
    );
}

#[test]
fn mounted_root_inspects_like_the_image() {
    let _serial = serial();
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    centos5_tree(&tree);
    let image = dir.path().join("centos5.img");
    mkfs(&image, FsType::Ext3, &tree, 16);
    let mount = mount_image(&image, &read_only(FsType::Ext3)).unwrap();
    let mounted = inspect_guest(&DirFiles::new(mount.path()));
    mount.unmount().unwrap();
    check_centos5(&mounted);
}

/// A disk: MBR with one bootable Linux partition at 1 MiB holding `fs`.
fn partitioned_disk(fs: &Path, disk: &Path) {
    let fs_bytes = fs::read(fs).unwrap();
    let file = File::create(disk).unwrap();
    let mut mbr = [0u8; 512];
    let entry = &mut mbr[0x1BE..0x1CE];
    entry[0] = 0x80;
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&((fs_bytes.len() / 512) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    file.write_all_at(&mbr, 0).unwrap();
    file.write_all_at(&fs_bytes, 1 << 20).unwrap();
}

#[test]
fn finds_the_root_partition_of_a_disk() {
    let dir = TempDir::new().unwrap();
    let tree = dir.path().join("tree");
    debian_tree(&tree);
    let fs_image = dir.path().join("root.img");
    mkfs(&fs_image, FsType::Ext4, &tree, 32);
    let disk = dir.path().join("disk.raw");
    partitioned_disk(&fs_image, &disk);

    let inspection = inspect_image(&disk).unwrap();
    let layout = &inspection.layout;
    assert_eq!(layout.kind, LayoutKind::Mbr);
    assert_eq!(
        (layout.root_partition, layout.offset, layout.length),
        (Some(1), 1 << 20, 32 << 20)
    );
    check_debian(&guest_part(&inspection));
}

#[test]
fn reports_damaged_images_by_name() {
    let dir = TempDir::new().unwrap();
    let image = small_image(dir.path(), FsType::Ext4);

    let junk = dir.path().join("junk.img");
    fs::write(&junk, vec![0x42u8; 1 << 20]).unwrap();
    let err = inspect_image(&junk).unwrap_err();
    assert!(matches!(err, InspectError::NotFilesystem { .. }), "{err}");
    assert!(err.to_string().contains("junk.img"), "{err}");

    let truncated = dir.path().join("truncated.img");
    fs::write(&truncated, &fs::read(&image).unwrap()[..8 << 20]).unwrap();
    let err = inspect_image(&truncated).unwrap_err();
    assert!(
        matches!(err, InspectError::Truncated { needed, available, .. } if needed == 16 << 20 && available == 8 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("truncated.img"), "{err}");

    // s_log_block_size (superblock +24) out of range: the magic is intact.
    let corrupt = dir.path().join("corrupt.img");
    fs::copy(&image, &corrupt).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&corrupt)
        .unwrap()
        .write_all_at(&[0xff; 4], 1024 + 24)
        .unwrap();
    let err = inspect_image(&corrupt).unwrap_err();
    assert!(matches!(err, InspectError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.img"), "{err}");
}

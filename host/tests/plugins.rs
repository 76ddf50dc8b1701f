//! The plugin sandbox, end to end: real components built by build.rs, run by the
//! real runtime against real guest trees. Hostile plugins must each be refused with
//! a clear error while the host keeps running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rehost::guest::root::GuestRoot;
use rehost::plugin::fixer_host::{call_fixer, NoCommands};
use rehost::plugin::fixer_host::{FixContext, NewRoot, OsInfo, TargetHardware};
use rehost::plugin::{stock, CommandRunner, FixerCall, Grants, Limits, Runtime};

fn wasm(name: &str) -> Vec<u8> {
    let path = Path::new(stock::WASM_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn runtime(cache: &Path) -> Runtime {
    // A short deadline keeps the infinite-loop test quick; memory stays at the default.
    Runtime::new(
        cache.to_path_buf(),
        Limits {
            deadline: Duration::from_secs(2),
            ..Limits::default()
        },
    )
    .unwrap()
}

fn context(config: &str) -> FixContext {
    FixContext {
        os: OsInfo {
            id: "centos".into(),
            version_id: "5.11".into(),
            pretty_name: "CentOS release 5.11 (Final)".into(),
            id_like: vec![],
            arch: "x86_64".into(),
        },
        target: TargetHardware::Virtualbox,
        kernels: vec![],
        root: NewRoot {
            uuid: "0b7c3c2e-5e9e-4c57-9d5b-1f7a2c2d3e4f".into(),
            label: None,
            fs_type: "ext3".into(),
            device: "/dev/sda1".into(),
        },
        config: config.into(),
        dry_run: false,
    }
}

/// A small guest tree with an absolute symlink pointing at a host file.
struct Guest {
    dir: tempfile::TempDir,
}

fn guest() -> Guest {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("shadow"), "root:!:19000:0:99999:7:::\n").unwrap();
    std::fs::write(etc.join("motd"), "old motd\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", etc.join("motd-link")).unwrap();
    // The host's own /etc/os-release is inside the plugin's read grant (/etc/**):
    // only chroot-style resolution keeps the plugin from reading it.
    std::os::unix::fs::symlink("/etc/os-release", etc.join("hostlink")).unwrap();
    // Opening a FIFO for reading blocks until a writer comes: the host must not.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        etc.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    Guest { dir }
}

fn run_hostile(rt: &Runtime, guest: &Guest, attack: &str) -> Result<Vec<String>, String> {
    let plugin = rt
        .load(&wasm("hostile"), "hostile.wasm")
        .map_err(|e| e.to_string())?;
    let grants = Grants::effective(&plugin.manifest.capabilities, None, None).unwrap();
    let commands: Arc<dyn CommandRunner> = Arc::new(NoCommands);
    let call = FixerCall {
        root: Arc::new(GuestRoot::open(guest.dir.path()).unwrap()),
        context: context(&format!("attack = \"{attack}\"")),
        grants,
        commands: &commands,
        command_timeout: Duration::from_secs(5),
    };
    call_fixer(rt, &plugin, call)
        .map(|o| o.report.changes)
        .map_err(|e| e.to_string())
}

#[test]
fn hostile_plugins_are_refused_and_the_host_keeps_running() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let g = guest();

    let cases: &[(&str, &str)] = &[
        ("traversal", "is not absolute"),
        ("dotdot", "contains '..' (path traversal is refused)"),
        (
            "write-outside",
            "write /etc/shadow: no write grant covers this path",
        ),
        (
            "write-via-symlink",
            "/etc/motd-link is a symlink to /etc/shadow",
        ),
        (
            "command",
            "run /bin/rm: command not granted (granted commands: /bin/true)",
        ),
        ("fifo", "read /etc/fifo: not a regular file"),
        (
            "initrd-fifo",
            "initrd-modules /etc/fifo: not a regular file",
        ),
        (
            "initrd-outside",
            "initrd-modules /boot/initrd.img: no read grant covers this path",
        ),
        ("loop", "ran past its deadline of 2 s and was stopped"),
        ("memory", "exceeded its memory limit of 32 MiB"),
        ("panic", "trapped"),
    ];
    for (attack, expected) in cases {
        let err = run_hostile(&rt, &g, attack).expect_err(attack);
        assert!(
            err.contains("plugin hostile"),
            "{attack}: error does not name the plugin: {err}"
        );
        assert!(
            err.contains(expected),
            "{attack}: expected {expected:?} in: {err}"
        );
    }
    // Nothing the hostile plugin tried reached the guest.
    assert_eq!(
        std::fs::read_to_string(g.dir.path().join("etc/shadow")).unwrap(),
        "root:!:19000:0:99999:7:::\n"
    );

    // The absolute symlink resolves inside the guest: first to nothing, then to the
    // guest's own file, never to the host's.
    let err = run_hostile(&rt, &g, "symlink-escape").unwrap_err();
    assert!(
        err.contains("not found: plugin hostile: read /etc/hostlink"),
        "{err}"
    );
    std::fs::write(g.dir.path().join("etc/os-release"), "ID=guest\n").unwrap();
    assert_eq!(
        run_hostile(&rt, &g, "symlink-escape").unwrap(),
        ["ID=guest\n"]
    );

    // initrd-modules lists what an initrd built by the system's cpio and gzip packs.
    let tree = tempfile::tempdir().unwrap();
    let drivers = tree
        .path()
        .join("usr/lib/modules/6.1.0/kernel/drivers/block");
    std::fs::create_dir_all(&drivers).unwrap();
    std::fs::write(drivers.join("virtio-blk.ko.xz"), "").unwrap();
    std::fs::write(drivers.join("loop.ko"), "").unwrap();
    let build = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . | cpio --quiet -o -H newc | gzip -n")
        .current_dir(tree.path())
        .output()
        .unwrap();
    assert!(build.status.success());
    std::fs::write(g.dir.path().join("etc/initrd.img"), build.stdout).unwrap();
    assert_eq!(run_hostile(&rt, &g, "initrd").unwrap(), ["loop,virtio_blk"]);

    // After all that, the same runtime still runs a well-behaved call.
    run_hostile(&rt, &g, "allowed").unwrap();
    assert_eq!(
        std::fs::read_to_string(g.dir.path().join("etc/motd")).unwrap(),
        "hello from a sandboxed fixer\n"
    );
}

#[test]
fn a_plugin_for_another_api_major_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let err = runtime(cache.path())
        .load(&wasm("future-api"), "future-api.wasm")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plugin future-api 2.0.0 needs host API ^2"),
        "{err}"
    );
    assert!(err.contains("this rehost implements 0.1.0"), "{err}");
}

#[test]
fn a_component_without_manifest_or_not_wasm_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let err = rt
        .load(b"not wasm at all", "junk.wasm")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("junk.wasm: not a WebAssembly component"),
        "{err}"
    );
    // A component without the custom section: strip it from a real one.
    let stripped = strip_custom_section(&wasm("hostile"), "rehost-manifest");
    let err = rt.load(&stripped, "bare.wasm").unwrap_err().to_string();
    assert!(err.contains("bare.wasm: no rehost manifest"), "{err}");
}

#[test]
fn compiled_components_are_cached_by_digest_and_engine() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = wasm("xen-console");
    let first = runtime(cache.path());
    let plugin = first.load(&bytes, "xen-console").unwrap();
    let cached = first.cache_path(&plugin.digest);
    assert!(cached.exists(), "no cache entry at {}", cached.display());
    let mtime = std::fs::metadata(&cached).unwrap().modified().unwrap();
    drop(first);
    // A new process-equivalent runtime loads from the cache and does not rewrite it.
    let second = runtime(cache.path());
    second.load(&bytes, "xen-console").unwrap();
    assert_eq!(
        std::fs::metadata(&cached).unwrap().modified().unwrap(),
        mtime
    );
}

#[test]
fn stock_xen_console_fixer_runs_through_the_whole_chain() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "etc/inittab", "id:3:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n1:2345:respawn:/sbin/mingetty tty1\nxvc0:2345:respawn:/sbin/mingetty xvc0\n");
    write(root, "etc/securetty", "console\ntty1\n");
    write(root, "sbin/agetty", "");

    let bytes = stock::find("xen-console").expect("xen-console is a stock plugin");
    let plugin = rt.load(bytes, "stock:xen-console").unwrap();
    let grants = Grants::effective(&plugin.manifest.capabilities, None, None).unwrap();
    let commands: Arc<dyn CommandRunner> = Arc::new(NoCommands);
    let outcome = call_fixer(
        &rt,
        &plugin,
        FixerCall {
            root: Arc::new(GuestRoot::open(root).unwrap()),
            context: context(""),
            grants,
            commands: &commands,
            command_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/inittab")).unwrap(),
        "id:3:initdefault:\nsi::sysinit:/etc/rc.d/rc.sysinit\n1:2345:respawn:/sbin/mingetty tty1\nS0:2345:respawn:/sbin/agetty -L 115200 ttyS0 vt100\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/securetty")).unwrap(),
        "console\ntty1\nttyS0\n"
    );
    assert_eq!(
        outcome.report.changes.len(),
        3,
        "{:?}",
        outcome.report.changes
    );
    assert!(outcome
        .journal
        .iter()
        .all(|c| !matches!(c, rehost::plugin::journal::Change::Run { .. })));
}

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Rewrites a component without the named custom section (in any nested module).
fn strip_custom_section(wasm: &[u8], name: &str) -> Vec<u8> {
    // The section's bytes are found and overwritten in place with a same-length
    // custom section of another name, which keeps every offset valid.
    let mut out = wasm.to_vec();
    let needle = name.as_bytes();
    let pos = out
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("section present");
    out[pos..pos + needle.len()].copy_from_slice(&b"x".repeat(needle.len()));
    out
}

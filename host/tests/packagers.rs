//! The stock packagers, end to end: real components run by the real runtime through
//! `packager_host::package`, every output checked by qemu-img, the OVA taken apart
//! with tar and sha1sum, and the OVA's disk booted on AHCI + e1000.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use rehost::boot_test::{self, BootTestOptions, DiskFormat, Target};
use rehost::plugin::fixer_host::{OsInfo, TargetHardware};
use rehost::plugin::packager_host::{package, PackageOutcome, VmSettings};
use rehost::plugin::{stock, Limits, LoadedPlugin, PluginError, Runtime};
use tempfile::TempDir;

const MIB: u64 = 1 << 20;

/// One plugin cache for the test binary, so components compile once.
fn runtime() -> Runtime {
    let cache = std::env::temp_dir().join("rehost-test-plugin-cache");
    Runtime::new(cache, Limits::default()).unwrap()
}

fn load(runtime: &Runtime, name: &str) -> LoadedPlugin {
    let path = Path::new(stock::WASM_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    runtime.load(&wasm, name).unwrap()
}

fn debian() -> OsInfo {
    OsInfo {
        id: "debian".into(),
        version_id: "12".into(),
        pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        id_like: vec![],
        arch: "x86_64".into(),
    }
}

fn settings(name: &str, config: &str) -> VmSettings {
    let mut s = VmSettings::new(name, TargetHardware::Virtualbox, debian());
    s.config = config.into();
    s
}

/// A sparse raw disk with an MBR and incompressible data scattered through it, in
/// its own temporary directory (removed on drop).
struct Disk {
    dir: TempDir,
    path: PathBuf,
    size: u64,
}

impl Disk {
    fn new(size: u64) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let file = File::create(&path).unwrap();
        file.set_len(size).unwrap();
        // One Linux partition from sector 2048 to the end, and the boot signature.
        let mut mbr = [0u8; 512];
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&((size / 512 - 2048) as u32).to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        file.write_all_at(&mbr, 0).unwrap();
        for (i, at) in [
            MIB,
            7 * MIB + 4096,
            64 * MIB - 512,
            150 * MIB + 12345,
            size - 3000,
        ]
        .into_iter()
        .filter(|&at| at < size)
        .enumerate()
        {
            file.write_all_at(&noise(i as u64 + 1, 300_000.min((size - at) as usize)), at)
                .unwrap();
        }
        Disk { dir, path, size }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn package(&self, runtime: &Runtime, plugin: &str, config: &str, out: &str) -> PackageOutcome {
        let plugin = load(runtime, plugin);
        package(
            runtime,
            &plugin,
            &self.path,
            &settings("test vm", config),
            &self.out(out),
            &AtomicBool::new(false),
        )
        .unwrap()
    }

    /// Files in the directory other than the source disk.
    fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "disk.raw")
            .collect();
        names.sort();
        names
    }
}

/// xorshift bytes: incompressible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qemu_check(format: &str, image: &Path) {
    run_ok(
        Command::new("qemu-img")
            .args(["check", "-f", format])
            .arg(image),
    );
}

/// `qemu-img compare` in strict mode would flag the 512-rounded tail; the default
/// mode requires it to be zeros, which is what the formats promise.
fn qemu_identical(raw: &Path, format: &str, image: &str) {
    let out = run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(raw)
            .arg(image),
    );
    assert!(out.contains("Images are identical"), "{image}: {out}");
}

#[test]
fn single_disk_packagers_write_images_qemu_reads_back_identical() {
    let runtime = runtime();
    // 300 MiB, and one size that is a whole number of sectors but not of 64 KiB.
    for size in [300 * MIB, 300 * MIB + 7 * 512] {
        let disk = Disk::new(size);
        for (plugin, config, name, format) in [
            ("raw", "", "vm.raw", "raw"),
            ("qcow2", "", "vm.qcow2", "qcow2"),
            ("qcow2", "compressed = true", "vm-z.qcow2", "qcow2"),
            ("vdi", "", "vm.vdi", "vdi"),
        ] {
            let outcome = disk.package(&runtime, plugin, config, name);
            let out = disk.out(name);
            assert_eq!(outcome.output, out);
            assert_eq!(outcome.report.files, vec![name.to_string()], "{plugin}");
            assert_eq!(outcome.bytes, out.metadata().unwrap().len(), "{plugin}");
            if format != "raw" {
                qemu_check(format, &out);
            }
            qemu_identical(&disk.path, format, out.to_str().unwrap());
        }
        let compressed = disk.out("vm-z.qcow2").metadata().unwrap().len();
        let plain = disk.out("vm.qcow2").metadata().unwrap().len();
        assert!(
            compressed <= plain,
            "compressed {compressed} > plain {plain}"
        );
        // Nothing but the outputs: no temporary files left behind.
        assert_eq!(
            disk.leftovers(),
            ["vm-z.qcow2", "vm.qcow2", "vm.raw", "vm.vdi"]
        );
    }
}

/// A ustar member: name, data offset, size.
fn tar_members(archive: &Path) -> Vec<(String, u64, u64)> {
    let file = File::open(archive).unwrap();
    let mut members = Vec::new();
    let mut at = 0;
    loop {
        let mut header = [0u8; 512];
        file.read_exact_at(&mut header, at).unwrap();
        if header.iter().all(|&b| b == 0) {
            return members;
        }
        let field = |r: std::ops::Range<usize>| {
            String::from_utf8_lossy(&header[r])
                .trim_end_matches('\0')
                .trim()
                .to_string()
        };
        let size = u64::from_str_radix(&field(124..136), 8).unwrap();
        members.push((field(0..100), at + 512, size));
        at += 512 + size.next_multiple_of(512);
    }
}

#[test]
fn ova_is_ovf_vmdk_and_manifest_that_agree_with_the_disk() {
    let runtime = runtime();
    let disk = Disk::new(300 * MIB + 7 * 512);
    let outcome = disk.package(&runtime, "virtualbox-ova", "", "web <01> & co.ova");
    let ova = disk.out("web <01> & co.ova");
    // The output name is not a safe member name, so the members are "vm.*".
    let (ovf_name, vmdk_name, mf_name) = ("vm.ovf", "vm-disk001.vmdk", "vm.mf");
    assert_eq!(outcome.report.files, [ovf_name, vmdk_name, mf_name]);

    let listing = run_ok(Command::new("tar").arg("tvf").arg(&ova));
    let listed: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(listed, [ovf_name, vmdk_name, mf_name], "{listing}");

    let out = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("xf")
            .arg(&ova)
            .arg("-C")
            .arg(out.path()),
    );
    let text = std::fs::read_to_string(out.path().join(ovf_name)).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the OVF is well-formed XML");
    let ovf_ns = "http://schemas.dmtf.org/ovf/envelope/1";
    let attr =
        |node: roxmltree::Node, name: &str| node.attribute((ovf_ns, name)).map(str::to_owned);
    let element = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .unwrap_or_else(|| panic!("no {name} in the OVF"))
    };
    assert_eq!(attr(element("File"), "href").as_deref(), Some(vmdk_name));
    let capacity: u64 = attr(element("Disk"), "capacity").unwrap().parse().unwrap();
    assert_eq!(capacity, disk.size);
    assert_eq!(
        attr(element("VirtualSystem"), "id").as_deref(),
        Some("test vm")
    );
    assert_eq!(
        attr(element("OperatingSystemSection"), "id").as_deref(),
        Some("96")
    );
    let rasd = |item: roxmltree::Node, key: &str| {
        item.children()
            .find(|c| c.tag_name().name() == key)
            .and_then(|c| c.text())
            .map(str::to_owned)
    };
    let items: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Item")
        .collect();
    let by_type = |t: &str| {
        *items
            .iter()
            .find(|i| rasd(**i, "ResourceType").as_deref() == Some(t))
            .unwrap_or_else(|| panic!("no item of ResourceType {t}"))
    };
    assert_eq!(rasd(by_type("3"), "VirtualQuantity").as_deref(), Some("1"));
    assert_eq!(
        rasd(by_type("4"), "VirtualQuantity").as_deref(),
        Some("512")
    );
    assert_eq!(
        rasd(by_type("20"), "ResourceSubType").as_deref(),
        Some("AHCI")
    );
    assert_eq!(
        rasd(by_type("17"), "Parent"),
        rasd(by_type("20"), "InstanceID")
    );
    assert_eq!(
        rasd(by_type("10"), "ResourceSubType").as_deref(),
        Some("E1000")
    );
    for item in &items {
        let keys: Vec<&str> = item
            .children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name())
            .collect();
        assert!(keys.is_sorted(), "rasd children out of order: {keys:?}");
    }

    // Each manifest line matches sha1sum of the member, in write order.
    let manifest = std::fs::read_to_string(out.path().join(mf_name)).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines.len(), 2, "{manifest}");
    for (line, name) in lines.iter().zip([ovf_name, vmdk_name]) {
        let sum = run_ok(Command::new("sha1sum").arg(out.path().join(name)));
        let digest = sum.split_whitespace().next().unwrap();
        assert_eq!(*line, format!("SHA1 ({name})= {digest}"));
    }

    // The extracted VMDK, and the VMDK read in place inside the archive.
    let vmdk = out.path().join(vmdk_name);
    qemu_check("vmdk", &vmdk);
    qemu_identical(&disk.path, "vmdk", vmdk.to_str().unwrap());
    let members = tar_members(&ova);
    let (_, offset, size) = members
        .iter()
        .find(|(n, _, _)| n == vmdk_name)
        .unwrap()
        .clone();
    let in_place = format!(
        r#"json:{{"driver":"vmdk","file":{{"driver":"raw","offset":{offset},"size":{size},"file":{{"driver":"file","filename":"{}"}}}}}}"#,
        ova.display()
    );
    qemu_identical(&disk.path, "vmdk", &in_place);
}

#[test]
fn a_failing_packager_leaves_no_output_and_keeps_an_older_one() {
    let runtime = runtime();
    let disk = Disk::new(64 * MIB);
    let existing = disk.out("vm.qcow2");
    std::fs::write(&existing, b"an older output").unwrap();
    let qcow2 = load(&runtime, "qcow2");
    let attempt = |settings: &VmSettings, out: &Path, cancel: bool| {
        package(
            &runtime,
            &qcow2,
            &disk.path,
            settings,
            out,
            &AtomicBool::new(cancel),
        )
    };

    // The plugin refuses its config before writing.
    let err = attempt(&settings("vm", "compressed = \"yes\""), &existing, false).unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("packager config"), "{err}");

    // The host fails in the middle of writing the disk (cancelled).
    let err = attempt(&settings("vm", ""), &existing, true).unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");

    // A store too small to instantiate the plugin in: a trap before any output.
    let tiny = Runtime::new(
        std::env::temp_dir().join("rehost-test-plugin-cache"),
        Limits {
            memory_bytes: 64 << 10,
            ..Limits::default()
        },
    )
    .unwrap();
    let err = package(
        &tiny,
        &load(&tiny, "qcow2"),
        &disk.path,
        &settings("vm", ""),
        &disk.out("new.qcow2"),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Instantiate { .. } | PluginError::Memory { .. } | PluginError::Trap { .. }
        ),
        "{err}"
    );

    assert_eq!(std::fs::read(&existing).unwrap(), b"an older output");
    assert_eq!(disk.leftovers(), ["vm.qcow2"]);
}

#[test]
fn a_plugin_that_is_not_a_packager_is_refused() {
    let runtime = runtime();
    let disk = Disk::new(8 * MIB);
    let fixer = load(&runtime, "xen-console");
    let err = package(
        &runtime,
        &fixer,
        &disk.path,
        &settings("vm", ""),
        &disk.out("vm.raw"),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(err, PluginError::WrongKind { .. }), "{err}");
    assert!(disk.leftovers().is_empty());
}

/// A Debian 12 cloud image converted for VirtualBox by the real binary, cached
/// between runs of the same binary on the same fixture (converting installs a
/// kernel in the guest and takes minutes). A new build or fixture converts again,
/// so the boot test never runs on what an older rehost made.
fn converted_debian() -> PathBuf {
    let fixture = Path::new("/var/cache/rehost-fixtures/debian12-cloud.ext4");
    assert!(
        fixture.exists(),
        "{} is missing; run tests/fixtures/build-debian.sh",
        fixture.display()
    );
    let stamp = |path: &Path| {
        let md = std::fs::metadata(path).unwrap();
        format!(
            "{}.{}",
            md.len(),
            md.modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    };
    let key = format!(
        "{}-{}",
        stamp(Path::new(env!("CARGO_BIN_EXE_rehost"))),
        stamp(fixture)
    );
    let prefix = "rehost-test-debian12-virtualbox-";
    let cached = std::env::temp_dir().join(format!("{prefix}{key}.raw"));
    if cached.exists() {
        return cached;
    }
    // Conversions by older builds are stale: drop them rather than fill /tmp.
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let partial = cached.with_extension("partial.raw");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_rehost"))
            .arg("convert")
            .arg(fixture)
            .arg("-o")
            .arg(&partial)
            .args(["--target", "virtualbox"]),
    );
    std::fs::rename(&partial, &cached).unwrap();
    cached
}

#[test]
fn the_ova_disk_boots_on_ahci_and_e1000() {
    let runtime = runtime();
    let raw = converted_debian();
    let dir = tempfile::tempdir().unwrap();
    let ova = dir.path().join("debian12.ova");
    let plugin = load(&runtime, "virtualbox-ova");
    package(
        &runtime,
        &plugin,
        &raw,
        &settings("debian12", ""),
        &ova,
        &AtomicBool::new(false),
    )
    .unwrap();
    run_ok(
        Command::new("tar")
            .arg("xf")
            .arg(&ova)
            .arg("-C")
            .arg(dir.path())
            .arg("debian12-disk001.vmdk"),
    );
    let vmdk = dir.path().join("debian12-disk001.vmdk");
    let mut opts = BootTestOptions::new(&vmdk, DiskFormat::Vmdk, "rehost");
    opts.target = Target::Virtualbox;
    opts.memory_mib = 512;
    opts.commands = vec!["cat /proc/cmdline".into()];
    let report = boot_test::run(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.reached_login, "see {}", report.console_log.display());
}

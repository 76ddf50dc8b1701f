//! The whole fixer on a Debian 12 cloud instance tree like tests/fixtures/build-debian.sh's.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};

use rehost_sdk::fixer::{DirGuest, FileStat, NewRoot, Output, WriteOptions};
use rehost_sdk::testing::newc_archive;
use rehost_sdk::{KernelInfo, TargetHardware};

use super::*;

const CLOUD: &str = "6.1.0-18-cloud-amd64";
const GENERIC: &str = "6.1.0-21-amd64";
const UUID: &str = "0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11";

const FSTAB: &str = "/dev/xvda1\t/\text4\tdefaults\t0 1\n/dev/xvda3 none swap sw 0 0\n";
const FSTAB_FIXED: &str = "UUID=0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11\t/\text4\tdefaults\t0 1\n\
# rehost: disabled, /dev/xvda3 is a Xen disk the VM does not have: /dev/xvda3 none swap sw 0 0\n";

const RC_LOCAL: &str = "#!/bin/sh
# Record this instance's id from the cloud metadata service.
curl -s --max-time 600 http://169.254.169.254/latest/meta-data/instance-id >/run/instance-id
exit 0
";
const RC_LOCAL_FIXED: &str = "#!/bin/sh
# Record this instance's id from the cloud metadata service.
: # rehost: disabled off-cloud (cloud metadata address 169.254.169.254): curl -s --max-time 600 http://169.254.169.254/latest/meta-data/instance-id >/run/instance-id
exit 0
";

const MODULES: &str =
    "# List of modules that you want to include in your initramfs.\n#\n# raid1\n# sd_mod\n";

const NOCLOUD: &str = "\
# rehost: this VM no longer runs on the cloud it was made on. Without this, cloud-init
# probes the EC2/OpenStack metadata service at every boot and waits for it to time out.
# NoCloud reads a seed disk if you attach one; None runs without any datasource.
datasource_list: [ NoCloud, None ]
";

fn write(root: &Path, path: &str, text: &str) {
    let host = root.join(path);
    fs::create_dir_all(host.parent().unwrap()).unwrap();
    fs::write(host, text).unwrap();
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).unwrap()
}

/// A kernel in /boot with its modules (empty files, as the check only looks at
/// names), whose initrd packs `in_initrd`.
fn add_kernel(root: &Path, version: &str, modules: &[&str], in_initrd: &[&str]) {
    write(root, &format!("boot/vmlinuz-{version}"), "kernel");
    write(
        root,
        &format!("lib/modules/{version}/modules.builtin"),
        "kernel/fs/ext4/ext4.ko\n",
    );
    let dep: String = modules.iter().map(|m| format!("{m}:\n")).collect();
    write(root, &format!("lib/modules/{version}/modules.dep"), &dep);
    for module in modules {
        write(root, &format!("lib/modules/{version}/{module}"), "");
    }
    build_initrd(root, version, in_initrd);
}

/// What update-initramfs leaves: an initrd with `modules` below /usr/lib/modules.
fn build_initrd(root: &Path, version: &str, modules: &[&str]) {
    let members: Vec<String> = modules
        .iter()
        .map(|m| format!("usr/lib/modules/{version}/{m}"))
        .collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let host = root.join(format!("boot/initrd.img-{version}"));
    fs::write(host, newc_archive(&members)).unwrap();
}

/// Every module of kernel `version`, as MODULES=most packs them.
fn all_modules(root: &Path, version: &str) -> Vec<String> {
    read(root, &format!("lib/modules/{version}/modules.dep"))
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

/// Debian 12 as build-debian.sh makes it, plus cloud-init and MODULES=dep.
fn debian_cloud_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "etc/fstab", FSTAB);
    write(root, "etc/rc.local", RC_LOCAL);
    write(
        root,
        "etc/cloud/cloud.cfg",
        "datasource_list: [ Ec2, None ]\n",
    );
    write(
        root,
        "etc/initramfs-tools/initramfs.conf",
        "MODULES=dep\nBUSYBOX=auto\n",
    );
    write(root, "etc/initramfs-tools/modules", MODULES);
    fs::create_dir_all(root.join("etc/initramfs-tools/conf.d")).unwrap();
    write(
        root,
        "etc/systemd/network/50-dhcp.network",
        "[Match]\nName=eth0 ens* enp*\n\n[Network]\nDHCP=yes\n",
    );
    write(root, "usr/sbin/update-initramfs", "");
    write(root, "usr/bin/apt-get", "");
    // Its initrd was built on Xen: it has only the Xen disk driver.
    add_kernel(
        root,
        CLOUD,
        &[
            "kernel/drivers/block/virtio_blk.ko",
            "kernel/drivers/block/xen-blkfront.ko",
            "kernel/drivers/net/virtio_net.ko",
        ],
        &["kernel/drivers/block/xen-blkfront.ko"],
    );
    tmp
}

/// A DirGuest whose commands are recorded with their environment, and whose
/// `apt-get install` puts linux-image-amd64's kernel in place (or fails).
struct AptGuest {
    dir: DirGuest,
    root: PathBuf,
    installs_kernel: bool,
    answer: Output,
    commands: RefCell<Vec<Vec<String>>>,
    envs: RefCell<Vec<Vec<(String, String)>>>,
}

impl AptGuest {
    fn new(root: &Path) -> Self {
        AptGuest {
            dir: DirGuest::new(root),
            root: root.to_path_buf(),
            installs_kernel: true,
            answer: Output {
                status: 0,
                stdout: String::new(),
                stderr: String::new(),
            },
            commands: RefCell::default(),
            envs: RefCell::default(),
        }
    }

    fn commands(&self) -> Vec<Vec<String>> {
        self.commands.borrow().clone()
    }
}

impl Guest for AptGuest {
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.dir.read(path)
    }
    fn write(&self, path: &str, data: &[u8], options: WriteOptions) -> Result<()> {
        self.dir.write(path, data, options)
    }
    fn stat(&self, path: &str) -> Result<FileStat> {
        self.dir.stat(path)
    }
    fn exists(&self, path: &str) -> Result<bool> {
        self.dir.exists(path)
    }
    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        self.dir.list_dir(path)
    }
    fn mkdir_p(&self, path: &str, mode: u32) -> Result<()> {
        self.dir.mkdir_p(path, mode)
    }
    fn remove(&self, path: &str) -> Result<()> {
        self.dir.remove(path)
    }
    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.dir.rename(from, to)
    }
    fn symlink(&self, target: &str, link: &str) -> Result<()> {
        self.dir.symlink(target, link)
    }
    fn readlink(&self, path: &str) -> Result<String> {
        self.dir.readlink(path)
    }
    fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        self.dir.chmod(path, mode)
    }
    fn chown(&self, path: &str, uid: u32, gid: u32) -> Result<()> {
        self.dir.chown(path, uid, gid)
    }
    fn initrd_modules(&self, path: &str) -> Result<Vec<String>> {
        self.dir.initrd_modules(path)
    }
    fn run(&self, argv: &[&str], env: &[(&str, &str)], _timeout_secs: u32) -> Result<Output> {
        self.commands
            .borrow_mut()
            .push(argv.iter().map(|s| s.to_string()).collect());
        self.envs.borrow_mut().push(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        if !self.answer.success() {
            return Ok(self.answer.clone());
        }
        if self.installs_kernel && argv.get(1) == Some(&"install") {
            // The package's hook builds the new kernel's initrd (MODULES=most).
            let modules = [
                "kernel/drivers/ata/ahci.ko",
                "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
            ];
            add_kernel(&self.root, GENERIC, &modules, &modules);
        }
        if argv[0] == "/usr/sbin/update-initramfs" {
            let version = argv[3];
            let modules = all_modules(&self.root, version);
            let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
            build_initrd(&self.root, version, &modules);
        }
        Ok(self.answer.clone())
    }
}

fn ctx(target: TargetHardware, config: &str, dry_run: bool) -> FixContext {
    let mut ctx = rehost_sdk::testing::fix_context("debian", "12", target, config);
    ctx.os.pretty_name = "Debian GNU/Linux 12 (bookworm)".into();
    ctx.kernels = vec![KernelInfo {
        version: CLOUD.into(),
        path: format!("/boot/vmlinuz-{CLOUD}"),
        initrd: Some(format!("/boot/initrd.img-{CLOUD}")),
        xen_only: false,
    }];
    ctx.root = NewRoot {
        uuid: UUID.into(),
        label: Some("cloudimg-rootfs".into()),
        fs_type: "ext4".into(),
        device: "/dev/sda1".into(),
    };
    ctx.dry_run = dry_run;
    ctx
}

fn fix(guest: &dyn Guest, ctx: &FixContext) -> Result<Report> {
    let mut report = Report::default();
    DebianCloud2Kvm::fix(guest, ctx, &mut report)?;
    Ok(report)
}

/// The boot entries as tuples (the WIT record has no PartialEq).
fn entries(report: &Report) -> Vec<(String, String, Option<String>, String)> {
    report
        .boot_entries
        .iter()
        .map(|e| {
            (
                e.title.clone(),
                e.kernel.clone(),
                e.initrd.clone(),
                e.cmdline.clone(),
            )
        })
        .collect()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn virtualbox_installs_the_generic_kernel_with_apt() {
    let tmp = debian_cloud_tree();
    let root = tmp.path();
    let guest = AptGuest::new(root);
    let report = fix(&guest, &ctx(TargetHardware::Virtualbox, "", false)).unwrap();

    assert_eq!(
        guest.commands(),
        [
            argv(&["/usr/bin/apt-get", "update"]),
            argv(&[
                "/usr/bin/apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "linux-image-amd64",
            ]),
            // The package's hook built an initrd with ahci: no rebuild after it.
        ]
    );
    let noninteractive = vec![("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())];
    assert_eq!(
        guest.envs.borrow()[..2],
        [noninteractive.clone(), noninteractive]
    );

    assert_eq!(read(root, "etc/fstab"), FSTAB_FIXED);
    assert_eq!(
        read(root, "etc/initramfs-tools/modules"),
        format!(
            "{MODULES}# rehost: drivers the initrd needs to mount / on VirtualBox hardware\n\
             ahci\nata_piix\nsd_mod\next4\n"
        )
    );
    assert_eq!(
        read(root, "etc/initramfs-tools/initramfs.conf"),
        "# rehost: MODULES=dep packs only the drivers of the machine the initrd is built on, \
         and rehost builds it in a chroot on the conversion host, not on the VM: use most.\n\
         MODULES=most\nBUSYBOX=auto\n"
    );
    assert_eq!(
        read(root, "etc/cloud/cloud.cfg.d/99-rehost-nocloud.cfg"),
        NOCLOUD
    );
    assert_eq!(read(root, "etc/rc.local"), RC_LOCAL_FIXED);
    // The NIC configuration already takes eth0: nothing written.
    assert!(!root
        .join("etc/systemd/network/50-rehost-eth0.network")
        .exists());
    assert!(!root.join("etc/network").exists());

    assert_eq!(
        entries(&report),
        [(
            format!("Debian GNU/Linux 12 (bookworm) ({GENERIC})"),
            format!("/boot/vmlinuz-{GENERIC}"),
            Some(format!("/boot/initrd.img-{GENERIC}")),
            "net.ifnames=0".to_string(),
        )]
    );
    let changes = report.changes.join("\n");
    for needle in [
        "installed linux-image-amd64",
        "cloud-init: no longer waits",
        "/etc/rc.local: commented out 1",
    ] {
        assert!(changes.contains(needle), "{needle} not in:\n{changes}");
    }
    assert!(report.warnings.iter().any(|w| w.contains("/dev/xvda3")));

    // Idempotent: the generic kernel is there now, and everything is configured.
    let again = AptGuest::new(root);
    let second = fix(&again, &ctx(TargetHardware::Virtualbox, "", false)).unwrap();
    assert!(second.changes.is_empty(), "{:?}", second.changes);
    assert!(again.commands().is_empty(), "{:?}", again.commands());
    assert_eq!(entries(&second), entries(&report));
}

#[test]
fn kvm_boots_the_cloud_kernel_without_apt() {
    let tmp = debian_cloud_tree();
    let root = tmp.path();
    let guest = AptGuest::new(root);
    let config = "extra_modules = [\"virtio_net\"]\nextra_cmdline = \"quiet\"\n";
    let report = fix(&guest, &ctx(TargetHardware::Kvm, config, false)).unwrap();

    assert_eq!(
        guest.commands(),
        [argv(&["/usr/sbin/update-initramfs", "-u", "-k", CLOUD])]
    );
    assert_eq!(
        read(root, "etc/initramfs-tools/modules"),
        format!(
            "{MODULES}# rehost: drivers the initrd needs to mount / on KVM hardware\n\
             virtio_pci\nvirtio_blk\next4\nvirtio_net\n"
        )
    );
    assert_eq!(read(root, "etc/fstab"), FSTAB_FIXED);
    assert_eq!(
        entries(&report),
        [(
            format!("Debian GNU/Linux 12 (bookworm) ({CLOUD})"),
            format!("/boot/vmlinuz-{CLOUD}"),
            Some(format!("/boot/initrd.img-{CLOUD}")),
            "net.ifnames=0 quiet".to_string(),
        )]
    );

    let again = AptGuest::new(root);
    let second = fix(&again, &ctx(TargetHardware::Kvm, config, false)).unwrap();
    assert!(second.changes.is_empty(), "{:?}", second.changes);
    assert!(again.commands().is_empty());
}

#[test]
fn missing_initrd_is_created() {
    let tmp = debian_cloud_tree();
    fs::remove_file(tmp.path().join(format!("boot/initrd.img-{CLOUD}"))).unwrap();
    fs::write(
        tmp.path().join("etc/initramfs-tools/initramfs.conf"),
        "MODULES=most\n",
    )
    .unwrap();
    let guest = AptGuest::new(tmp.path());
    fix(&guest, &ctx(TargetHardware::Kvm, "", false)).unwrap();
    assert_eq!(
        guest.commands().last().unwrap(),
        &argv(&["/usr/sbin/update-initramfs", "-c", "-k", CLOUD])
    );
}

#[test]
fn plan_reports_the_kernel_apt_would_install() {
    let tmp = debian_cloud_tree();
    let mut guest = AptGuest::new(tmp.path());
    guest.installs_kernel = false;
    let report = fix(&guest, &ctx(TargetHardware::Virtualbox, "", true)).unwrap();
    assert_eq!(guest.commands().len(), 2, "{:?}", guest.commands());
    assert!(report.boot_entries.is_empty());
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.contains("would boot linux-image-amd64's kernel")),
        "{:?}",
        report.changes
    );
}

#[test]
fn apt_failure_names_the_command_and_its_error() {
    let tmp = debian_cloud_tree();
    let mut guest = AptGuest::new(tmp.path());
    guest.answer = Output {
        status: 100,
        stdout: String::new(),
        stderr: "Reading package lists...\nE: Unable to locate package linux-image-amd64\n".into(),
    };
    let err = fix(&guest, &ctx(TargetHardware::Virtualbox, "", false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`/usr/bin/apt-get update` failed"), "{err}");
    assert!(err.contains("exit status 100"), "{err}");
    assert!(err.contains("E: Unable to locate package"), "{err}");
}

#[test]
fn install_without_a_suitable_kernel_is_an_error() {
    let tmp = debian_cloud_tree();
    let mut guest = AptGuest::new(tmp.path());
    guest.installs_kernel = false;
    let config = "kernel_package = \"linux-image-cloud-amd64\"";
    let err = fix(&guest, &ctx(TargetHardware::Virtualbox, config, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apt-get installed linux-image-cloud-amd64"),
        "{err}"
    );
    assert!(err.contains("ahci and e1000"), "{err}");
    assert_eq!(
        guest.commands()[1].last().unwrap(),
        "linux-image-cloud-amd64"
    );
}

#[test]
fn bad_config_is_a_clear_error() {
    let tmp = debian_cloud_tree();
    let guest = AptGuest::new(tmp.path());
    let err = fix(
        &guest,
        &ctx(TargetHardware::Kvm, "drop_xen_disks = true", false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("drop_xen_disks"), "{err}");
    let err = fix(
        &guest,
        &ctx(TargetHardware::Kvm, "kernel_package = \"-y\"", false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("kernel_package"), "{err}");
    // Nothing was touched before the config was refused.
    assert_eq!(read(tmp.path(), "etc/fstab"), FSTAB);
    assert!(guest.commands().is_empty());
}

#[test]
fn xen_disks_can_be_kept_and_cloud_init_disabled() {
    let tmp = debian_cloud_tree();
    let guest = AptGuest::new(tmp.path());
    let config = "drop_xen_devices = false\ndisable_cloud_init = true";
    let report = fix(&guest, &ctx(TargetHardware::Kvm, config, false)).unwrap();
    assert_eq!(
        read(tmp.path(), "etc/fstab"),
        FSTAB.replace("/dev/xvda1", &format!("UUID={UUID}"))
    );
    assert!(tmp.path().join("etc/cloud/cloud-init.disabled").exists());
    assert!(!tmp.path().join("etc/cloud/cloud.cfg.d").exists());
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("drop_xen_devices = false")));
}

/// The cloud initrd as Debian's own MODULES=most build leaves it: virtio included.
fn tree_whose_initrd_has_virtio() -> tempfile::TempDir {
    let tmp = debian_cloud_tree();
    let modules = all_modules(tmp.path(), CLOUD);
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    build_initrd(tmp.path(), CLOUD, &modules);
    tmp
}

#[test]
fn an_initrd_that_has_the_drivers_is_not_rebuilt() {
    let tmp = tree_whose_initrd_has_virtio();
    let guest = AptGuest::new(tmp.path());
    let report = fix(&guest, &ctx(TargetHardware::Kvm, "", false)).unwrap();
    // virtio_pci is not in this kernel's modules.dep and ext4 is built in: neither
    // can be missing from the initrd.
    assert!(guest.commands().is_empty(), "{:?}", guest.commands());
    let changes = report.changes.join("\n");
    assert!(
        changes.contains("/etc/initramfs-tools/modules: added"),
        "{changes}"
    );
    assert!(!changes.contains("update-initramfs"), "{changes}");
    assert_eq!(
        entries(&report)[0].2,
        Some(format!("/boot/initrd.img-{CLOUD}"))
    );
}

#[test]
fn rebuild_initrd_always_rebuilds_it_anyway() {
    let tmp = tree_whose_initrd_has_virtio();
    let guest = AptGuest::new(tmp.path());
    let report = fix(
        &guest,
        &ctx(TargetHardware::Kvm, "rebuild_initrd = \"always\"", false),
    )
    .unwrap();
    assert_eq!(
        guest.commands(),
        [argv(&["/usr/sbin/update-initramfs", "-u", "-k", CLOUD])]
    );
    assert!(report.changes.iter().any(|c| c.contains("rebuilt")));
    let bad = ctx(TargetHardware::Kvm, "rebuild_initrd = \"never\"", false);
    let err = fix(&AptGuest::new(tmp.path()), &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rebuild_initrd"), "{err}");
}

#[test]
fn an_initrd_it_cannot_read_is_rebuilt() {
    let tmp = tree_whose_initrd_has_virtio();
    write(
        tmp.path(),
        &format!("boot/initrd.img-{CLOUD}"),
        "not an initrd",
    );
    let guest = AptGuest::new(tmp.path());
    fix(&guest, &ctx(TargetHardware::Kvm, "", false)).unwrap();
    assert_eq!(
        guest.commands(),
        [argv(&["/usr/sbin/update-initramfs", "-u", "-k", CLOUD])]
    );
}

#[test]
fn without_modules_dep_every_driver_not_built_in_counts() {
    let tmp = tree_whose_initrd_has_virtio();
    fs::remove_file(tmp.path().join(format!("lib/modules/{CLOUD}/modules.dep"))).unwrap();
    let guest = AptGuest::new(tmp.path());
    // virtio_pci might be a module this initrd lacks; ext4 is built in.
    assert!(
        initramfs::needs_rebuild(&guest, CLOUD, &argv(&["virtio_blk", "ext4"])).is_ok_and(|r| !r)
    );
    assert!(initramfs::needs_rebuild(&guest, CLOUD, &argv(&["virtio-pci"])).unwrap());
}

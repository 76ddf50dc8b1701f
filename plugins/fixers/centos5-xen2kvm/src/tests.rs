//! The fixer on a temporary tree holding the seed's own samples (the files of
//! tests/fixtures/build-centos5.sh), with commands recorded by `DirGuest`.

use std::fs;
use std::path::Path;

use rehost_sdk::files::shadow::{verify_password, Shadow};
use rehost_sdk::fixer::{DirGuest, FixContext, Fixer, Report};
use rehost_sdk::{KernelInfo, TargetHardware};

use super::Centos5Xen2Kvm;
use crate::kernel::compare_versions;

/// The seed's ORIGINAL (XEN) SAMPLE of /etc/inittab, verbatim (trailing blanks included).
const SEED_INITTAB: &str = r#"# inittab       This file describes how the INIT process should set up
#               the system in a certain run-level.
#
# Author:       Miquel van Smoorenburg, <miquels@drinkel.nl.mugnet.org>
#               Modified for RHS Linux by Marc Ewing and Donnie Barnes
#
# Default runlevel. The runlevels used by RHS are:
#   0 - halt (Do NOT set initdefault to this)
#   1 - Single user mode
#   2 - Multiuser, without NFS (The same as 3, if you do not have networking)
#   3 - Full multiuser mode
#   4 - unused
#   5 - X11
#   6 - reboot (Do NOT set initdefault to this)
# 
id:3:initdefault:

# System initialization.
si::sysinit:/etc/rc.d/rc.sysinit

l0:0:wait:/etc/rc.d/rc 0
l1:1:wait:/etc/rc.d/rc 1
l2:2:wait:/etc/rc.d/rc 2
l3:3:wait:/etc/rc.d/rc 3
l4:4:wait:/etc/rc.d/rc 4
l5:5:wait:/etc/rc.d/rc 5
l6:6:wait:/etc/rc.d/rc 6

# Trap CTRL-ALT-DELETE
ca::ctrlaltdel:/sbin/shutdown -t3 -r now

# When our UPS tells us power has failed, assume we have a few minutes
# of power left.  Schedule a shutdown for 2 minutes from now.
# This does, of course, assume you have powerd installed and your
# UPS connected and working correctly.  
pf::powerfail:/sbin/shutdown -f -h +2 "Power Failure; System Shutting Down"

# If power was restored before the shutdown kicked in, cancel it.
pr:12345:powerokwait:/sbin/shutdown -c "Power Restored; Shutdown Cancelled"


# Run gettys in standard runlevels
1:2345:respawn:/sbin/mingetty tty1
2:2345:respawn:/sbin/mingetty tty2
3:2345:respawn:/sbin/mingetty tty3
4:2345:respawn:/sbin/mingetty tty4
5:2345:respawn:/sbin/mingetty tty5
6:2345:respawn:/sbin/mingetty tty6

# Run xdm in runlevel 5
x:5:respawn:/etc/X11/prefdm -nodaemon
xvc0:2345:respawn:/sbin/mingetty xvc0
"#;

/// The seed's ORIGINAL (XEN) SAMPLE of /etc/modprobe.conf.
const SEED_MODPROBE: &str = "alias scsi_hostadapter xenblk\nalias eth0 xennet\n";

const FSTAB: &str = "\
/dev/xvda1              /                       ext3    defaults        1 1
none                    /dev/pts                devpts  gid=5,mode=620  0 0
none                    /dev/shm                tmpfs   defaults        0 0
none                    /proc                   proc    defaults        0 0
none                    /sys                    sysfs   defaults        0 0
/dev/xvda3              swap                    swap    defaults        0 0
";

const SELINUX: &str = "\
# This file controls the state of SELinux on the system.
# SELINUX= can take one of these three values:
#       enforcing - SELinux security policy is enforced.
#       permissive - SELinux prints warnings instead of enforcing.
#       disabled - SELinux is fully disabled.
SELINUX=enforcing
# SELINUXTYPE= type of policy in use. Possible values are:
#       targeted - Only targeted network daemons are protected.
#       strict - Full SELinux protection.
SELINUXTYPE=targeted
";

const SHADOW: &str = "\
root:$1$centos5$5zKGg2EN4uF5JcfDHj/Od0:15000:0:99999:7:::
nobody:*:15000:0:99999:7:::
";

const RC_LOCAL: &str = "\
#!/bin/sh
# This script will be executed *after* all the other init scripts.
touch /var/lock/subsys/local
# Fetch this instance's SSH key from the cloud metadata service.
mkdir -p /root/.ssh
curl -s --retry 30 http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key >/root/.ssh/authorized_keys
";

const SYSCONFIG_KERNEL: &str = "UPDATEDEFAULT=yes\nDEFAULTKERNEL=kernel-xen\n";

const XEN_KERNEL: &str = "2.6.18-348.el5xen";
/// What the fixture's `yum install kernel` lays down.
const NATIVE_KERNEL: &str = "2.6.18-348.el5";
const UUID: &str = "0b9f2c4e-8a4e-4c8e-9a57-2f1d0c6c1e11";
const PASSWORD: &str = "seed root password";

const MKINITRD_VIRTIO: [&str; 12] = [
    "--with",
    "virtio_pci",
    "--with",
    "virtio_ring",
    "--with",
    "virtio_blk",
    "--with",
    "virtio_net",
    "--with",
    "virtio_balloon",
    "--with",
    "virtio",
];

/// A CentOS 5 Xen guest tree. `native`: also the kernel yum would install, as if
/// yum had run (`DirGuest` records commands instead of running them).
fn centos5_tree(dir: &Path, native: bool) {
    for sub in ["etc/selinux", "etc/sysconfig", "boot", "sbin", "usr/bin"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let files = [
        ("etc/inittab", SEED_INITTAB),
        ("etc/modprobe.conf", SEED_MODPROBE),
        ("etc/fstab", FSTAB),
        ("etc/selinux/config", SELINUX),
        ("etc/shadow", SHADOW),
        ("etc/rc.local", RC_LOCAL),
        ("etc/sysconfig/kernel", SYSCONFIG_KERNEL),
    ];
    for (path, text) in files {
        fs::write(dir.join(path), text).unwrap();
    }
    let mut kernels = vec![XEN_KERNEL];
    if native {
        kernels.push(NATIVE_KERNEL);
    }
    for version in kernels {
        fs::write(dir.join(format!("boot/vmlinuz-{version}")), "kernel").unwrap();
        fs::write(dir.join(format!("boot/initrd-{version}.img")), "initrd").unwrap();
    }
}

/// The context the pipeline gives: the kernels inspected before any fixer ran.
fn ctx(target: TargetHardware, config: &str) -> FixContext {
    let mut ctx = rehost_sdk::testing::fix_context("centos", "5.11", target, config);
    ctx.os.pretty_name = "CentOS release 5.11 (Final)".into();
    ctx.kernels = vec![KernelInfo {
        version: XEN_KERNEL.into(),
        path: format!("/boot/vmlinuz-{XEN_KERNEL}"),
        initrd: Some(format!("/boot/initrd-{XEN_KERNEL}.img")),
        xen_only: true,
    }];
    ctx.root.uuid = UUID.into();
    ctx
}

fn read(dir: &Path, path: &str) -> String {
    fs::read_to_string(dir.join(path)).unwrap()
}

fn commands(guest: &DirGuest) -> Vec<Vec<String>> {
    guest.commands.borrow().clone()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn seed_guest_to_virtualbox_with_a_desktop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    let guest = DirGuest::new(dir);
    let config = format!("runlevel = 5\ndesktop = true\nroot_password = \"{PASSWORD}\"\n");
    let mut report = Report::default();
    Centos5Xen2Kvm::fix(
        &guest,
        &ctx(TargetHardware::Virtualbox, &config),
        &mut report,
    )
    .unwrap();

    // The seed's inittab change; the xvc0 getty is left to xen-console, with a warning.
    assert_eq!(
        read(dir, "etc/inittab"),
        SEED_INITTAB.replace("id:3:initdefault:", "id:5:initdefault:")
    );
    assert!(report.warnings.iter().any(|w| w.contains("xen-console")));
    // The seed's KVM sample's disk and NIC lines.
    assert_eq!(
        read(dir, "etc/modprobe.conf"),
        "alias scsi_hostadapter ata_piix\nalias scsi_hostadapter1 ahci\nalias eth0 e1000\n"
    );
    assert_eq!(
        read(dir, "etc/fstab"),
        FSTAB
            .replace("/dev/xvda1", &format!("UUID={UUID}"))
            .replace(
                "/dev/xvda3              swap                    swap    defaults        0 0\n",
                ""
            )
    );
    assert_eq!(
        read(dir, "boot/grub/grub.conf"),
        format!(
            "default=0\ntimeout=3\ntitle CentOS ({NATIVE_KERNEL})\n    root (hd0,0)\n    \
             kernel /boot/vmlinuz-{NATIVE_KERNEL} root=UUID={UUID} ro\n    \
             initrd /boot/initrd-{NATIVE_KERNEL}.img\n"
        )
    );
    for link in ["boot/grub/menu.lst", "boot/grub/grub.cfg"] {
        assert_eq!(
            fs::read_link(dir.join(link)).unwrap(),
            Path::new("grub.conf")
        );
    }
    assert_eq!(
        read(dir, "etc/sysconfig/kernel"),
        "UPDATEDEFAULT=yes\nDEFAULTKERNEL=kernel\n"
    );
    assert_eq!(
        read(dir, "etc/selinux/config"),
        SELINUX.replace("SELINUX=enforcing", "SELINUX=disabled")
    );
    assert_eq!(
        read(dir, "etc/rc.local"),
        RC_LOCAL.replace(
            "curl -s",
            ": # rehost: disabled off-cloud (cloud metadata address 169.254.169.254): curl -s"
        )
    );
    let shadow = Shadow::parse(&read(dir, "etc/shadow"));
    let root = shadow.find("root").unwrap();
    assert!(verify_password(PASSWORD, root.password_hash()));
    assert!(root.password_hash().starts_with("$6$"));
    assert_eq!(
        read(dir, "etc/shadow").lines().nth(1),
        Some("nobody:*:15000:0:99999:7:::")
    );

    let mut mkinitrd = vec!["/sbin/mkinitrd"];
    mkinitrd.extend(MKINITRD_VIRTIO);
    mkinitrd.extend([
        "--with", "ata_piix", "--with", "ahci", "--with", "sd_mod", "-f",
    ]);
    let initrd = format!("/boot/initrd-{NATIVE_KERNEL}.img");
    mkinitrd.extend([initrd.as_str(), NATIVE_KERNEL]);
    assert_eq!(
        commands(&guest),
        [
            argv(&[
                "/usr/bin/yum",
                "-y",
                "groupinstall",
                "X Window System",
                "GNOME Desktop Environment"
            ]),
            argv(&[
                "/usr/bin/yum",
                "-y",
                "install",
                "kernel",
                "mkinitrd",
                "grub"
            ]),
            argv(&mkinitrd),
        ]
    );

    let [entry] = report.boot_entries.as_slice() else {
        panic!("one boot entry: {:?}", report.boot_entries);
    };
    assert_eq!(entry.title, format!("CentOS ({NATIVE_KERNEL})"));
    assert_eq!(entry.kernel, format!("/boot/vmlinuz-{NATIVE_KERNEL}"));
    assert_eq!(entry.initrd.as_deref(), Some(initrd.as_str()));
    assert_eq!(entry.cmdline, "");
    let said = format!("{:?}{:?}", report.changes, report.warnings);
    assert!(!said.contains(PASSWORD), "{said}");
}

#[test]
fn kvm_target_maps_devices_and_names_the_root_device() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    let guest = DirGuest::new(dir);
    let config = "root_spec = \"device\"\nxen_devices = \"map\"\nselinux = \"permissive\"\n";
    let mut report = Report::default();
    Centos5Xen2Kvm::fix(&guest, &ctx(TargetHardware::Kvm, config), &mut report).unwrap();

    assert_eq!(read(dir, "etc/inittab"), SEED_INITTAB, "runlevel kept");
    assert_eq!(
        read(dir, "etc/modprobe.conf"),
        "alias scsi_hostadapter virtio_blk\nalias eth0 virtio_net\n"
    );
    assert_eq!(
        read(dir, "etc/fstab"),
        FSTAB.replace("/dev/xvda", "/dev/vda")
    );
    assert!(read(dir, "boot/grub/grub.conf").contains("root=/dev/vda1 ro\n"));
    assert_eq!(
        read(dir, "etc/selinux/config"),
        SELINUX.replace("SELINUX=enforcing", "SELINUX=permissive")
    );
    assert!(report.warnings.iter().any(|w| w.contains("/dev/vda3")));
    let mut mkinitrd = vec!["/sbin/mkinitrd"];
    mkinitrd.extend(MKINITRD_VIRTIO);
    let initrd = format!("/boot/initrd-{NATIVE_KERNEL}.img");
    mkinitrd.extend(["-f", initrd.as_str(), NATIVE_KERNEL]);
    assert_eq!(
        commands(&guest),
        [
            argv(&[
                "/usr/bin/yum",
                "-y",
                "install",
                "kernel",
                "mkinitrd",
                "grub"
            ]),
            argv(&mkinitrd),
        ]
    );
}

#[test]
fn second_run_changes_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    let guest = DirGuest::new(dir);
    // A guest that already has its native kernel: no yum.
    let mut context = ctx(TargetHardware::Virtualbox, "selinux = \"relabel\"\n");
    context.kernels.push(KernelInfo {
        version: NATIVE_KERNEL.into(),
        path: format!("/boot/vmlinuz-{NATIVE_KERNEL}"),
        initrd: None,
        xen_only: false,
    });
    Centos5Xen2Kvm::fix(&guest, &context, &mut Report::default()).unwrap();
    assert_eq!(read(dir, ".autorelabel"), "");
    assert_eq!(
        read(dir, "etc/selinux/config"),
        SELINUX,
        "relabel keeps the mode"
    );

    let mut again = Report::default();
    Centos5Xen2Kvm::fix(&guest, &context, &mut again).unwrap();
    // Only the initrd is rebuilt again; every file is as the first run left it.
    assert_eq!(again.changes.len(), 1, "{:?}", again.changes);
    assert!(again.changes[0].contains("mkinitrd"));
    let yum = commands(&guest)
        .iter()
        .filter(|c| c[0] == "/usr/bin/yum")
        .count();
    assert_eq!(yum, 0);
}

#[test]
fn plan_records_yum_and_says_what_would_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, false);
    let guest = DirGuest::new(dir);
    let mut context = ctx(TargetHardware::Virtualbox, "");
    context.dry_run = true;
    let mut report = Report::default();
    Centos5Xen2Kvm::fix(&guest, &context, &mut report).unwrap();
    assert_eq!(
        commands(&guest),
        [argv(&[
            "/usr/bin/yum",
            "-y",
            "install",
            "kernel",
            "mkinitrd",
            "grub"
        ])]
    );
    assert!(report.boot_entries.is_empty());
    assert!(report.changes.iter().any(|c| c.contains("would boot")));
    assert!(!dir.join("boot/grub/grub.conf").exists());
}

#[test]
fn runlevel_5_needs_a_desktop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    let guest = DirGuest::new(dir);
    let mut report = Report::default();
    let context = ctx(TargetHardware::Virtualbox, "runlevel = 5\n");
    Centos5Xen2Kvm::fix(&guest, &context, &mut report).unwrap();
    assert_eq!(read(dir, "etc/inittab"), SEED_INITTAB);
    assert!(report.warnings.iter().any(|w| w.contains("runlevel 3")));

    // An installed X server is a desktop.
    fs::write(dir.join("usr/bin/Xorg"), "").unwrap();
    Centos5Xen2Kvm::fix(&guest, &context, &mut Report::default()).unwrap();
    assert!(read(dir, "etc/inittab").contains("\nid:5:initdefault:\n"));
}

#[test]
fn steps_switch_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    let guest = DirGuest::new(dir);
    let config = "modprobe = false\nfstab = false\ninstall_kernel = false\nmkinitrd = false\n\
                  selinux = \"keep\"\ngrub_conf = false\nrc_local = false\n\
                  root_password_hash = \"$6$salt$hash\"\n";
    let mut report = Report::default();
    Centos5Xen2Kvm::fix(
        &guest,
        &ctx(TargetHardware::Virtualbox, config),
        &mut report,
    )
    .unwrap();
    for (path, text) in [
        ("etc/modprobe.conf", SEED_MODPROBE),
        ("etc/fstab", FSTAB),
        ("etc/selinux/config", SELINUX),
        ("etc/rc.local", RC_LOCAL),
        ("etc/sysconfig/kernel", SYSCONFIG_KERNEL),
    ] {
        assert_eq!(read(dir, path), text, "{path}");
    }
    assert!(!dir.join("boot/grub").exists());
    assert!(commands(&guest).is_empty());
    assert!(read(dir, "etc/shadow").starts_with("root:$6$salt$hash:"));
    assert_eq!(report.boot_entries.len(), 1, "the kernel is still chosen");
}

#[test]
fn rc_local_link_is_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    fs::create_dir_all(dir.join("etc/rc.d")).unwrap();
    fs::rename(dir.join("etc/rc.local"), dir.join("etc/rc.d/rc.local")).unwrap();
    std::os::unix::fs::symlink("rc.d/rc.local", dir.join("etc/rc.local")).unwrap();
    let guest = DirGuest::new(dir);
    Centos5Xen2Kvm::fix(
        &guest,
        &ctx(TargetHardware::Kvm, ""),
        &mut Report::default(),
    )
    .unwrap();
    assert!(fs::symlink_metadata(dir.join("etc/rc.local"))
        .unwrap()
        .is_symlink());
    assert!(read(dir, "etc/rc.d/rc.local").contains(": # rehost: disabled off-cloud"));
}

#[test]
fn only_xen_kernels_without_install_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, false);
    let guest = DirGuest::new(dir);
    let context = ctx(TargetHardware::Virtualbox, "install_kernel = false\n");
    let err = Centos5Xen2Kvm::fix(&guest, &context, &mut Report::default()).unwrap_err();
    assert!(err.to_string().contains("install_kernel"), "{err}");
}

#[test]
fn contradictory_or_impossible_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    let guest = DirGuest::new(dir);
    for (config, says) in [
        (
            "root_password = \"a\"\nroot_password_hash = \"b\"\n",
            "not both",
        ),
        ("runlevel = 6\n", "runlevel = 6"),
        ("root_spec = \"label\"\n", "no label"),
        ("selinux = \"enforcing\"\n", "enforcing"),
        ("desktp = true\n", "desktp"),
    ] {
        let context = ctx(TargetHardware::Virtualbox, config);
        let err = Centos5Xen2Kvm::fix(&guest, &context, &mut Report::default()).unwrap_err();
        assert!(err.to_string().contains(says), "{config}: {err}");
    }
    assert_eq!(
        read(dir, "etc/inittab"),
        SEED_INITTAB,
        "nothing was changed"
    );
    assert!(commands(&guest).is_empty());
}

#[test]
fn kernel_versions_compare_numerically() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions("2.6.18-398.el5", "2.6.18-48.el5"), Greater);
    assert_eq!(
        compare_versions("2.6.18-348.el5", "2.6.18-348.3.1.el5"),
        Less
    );
    assert_eq!(compare_versions("2.6.18-348.el5", "2.6.18-348.el5"), Equal);
}

#[test]
fn leaves_the_gettys_xen_console_set_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, true);
    // /etc/inittab as the xen-console fixer, which runs first, leaves it.
    let after_xen_console = SEED_INITTAB.replace(
        "xvc0:2345:respawn:/sbin/mingetty xvc0\n",
        "S0:2345:respawn:/sbin/agetty -L 115200 ttyS0 vt100\n",
    );
    fs::write(dir.join("etc/inittab"), &after_xen_console).unwrap();
    let guest = DirGuest::new(dir);
    let mut report = Report::default();
    let context = ctx(TargetHardware::Virtualbox, "runlevel = 5\ndesktop = true\n");
    Centos5Xen2Kvm::fix(&guest, &context, &mut report).unwrap();
    assert_eq!(
        read(dir, "etc/inittab"),
        after_xen_console.replace("id:3:initdefault:", "id:5:initdefault:")
    );
    assert!(
        !report.warnings.iter().any(|w| w.contains("xen-console")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_failing_command_names_itself_and_stops_the_fixer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    centos5_tree(dir, false);
    let mut guest = DirGuest::new(dir);
    guest.command_output = rehost_sdk::fixer::Output {
        status: 1,
        stdout: String::new(),
        stderr: "Cannot find a valid baseurl for repo: base\n".into(),
    };
    let context = ctx(TargetHardware::Virtualbox, "");
    let err = Centos5Xen2Kvm::fix(&guest, &context, &mut Report::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`/usr/bin/yum -y install kernel mkinitrd grub` failed in the guest"),
        "{text}"
    );
    assert!(text.contains("Cannot find a valid baseurl"), "{text}");
    assert!(
        !dir.join("boot/grub").exists(),
        "no step after the failure ran"
    );
    assert_eq!(read(dir, "etc/rc.local"), RC_LOCAL);
}

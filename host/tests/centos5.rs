//! The CentOS 5 fixers end to end: the synthetic CentOS 5 Xen fixture
//! (tests/fixtures/build-centos5.sh) converted by the real binary, with the real
//! in-guest exec path running the fixture's recording yum, mkinitrd and rpm. The
//! result is read without mounting (debugfs on the partition's offset) and every
//! file the fixers change is compared whole, as is the log of commands run.
//! Needs root (loop devices, mounts, chroot), e2fsprogs, grub-pc-bin, openssl.
//!
//! The fixture's kernels are dummies that cannot boot, so `--allow-check-errors`
//! keeps a finding of the final check from hiding what the fixers did; the tests
//! still expect it to find no error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, rehost};

/// `/dev/sda1` starts 1 MiB into the converted disk.
const PARTITION_OFFSET: u64 = 1 << 20;
/// What the fixture's `yum install kernel` lays down.
const NATIVE_KERNEL: &str = "2.6.18-348.el5";
const PASSWORD: &str = "seed: use a root password you will remember";

/// The fixture's /etc/inittab: the seed's Xen sample, byte for byte.
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

const FSTAB_TAIL: &str = "\
none                    /dev/pts                devpts  gid=5,mode=620  0 0
none                    /dev/shm                tmpfs   defaults        0 0
none                    /proc                   proc    defaults        0 0
none                    /sys                    sysfs   defaults        0 0
";

const SELINUX_DISABLED: &str = "\
# This file controls the state of SELinux on the system.
# SELINUX= can take one of these three values:
#       enforcing - SELinux security policy is enforced.
#       permissive - SELinux prints warnings instead of enforcing.
#       disabled - SELinux is fully disabled.
SELINUX=disabled
# SELINUXTYPE= type of policy in use. Possible values are:
#       targeted - Only targeted network daemons are protected.
#       strict - Full SELinux protection.
SELINUXTYPE=targeted
";

const RC_LOCAL: &str = "\
#!/bin/sh
# This script will be executed *after* all the other init scripts.
touch /var/lock/subsys/local
# Fetch this instance's SSH key from the cloud metadata service.
mkdir -p /root/.ssh
: # rehost: disabled off-cloud (cloud metadata address 169.254.169.254): curl -s --retry 30 http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key >/root/.ssh/authorized_keys
";

const VIRTIO_WITH: &str = "--with virtio_pci --with virtio_ring --with virtio_blk \
                           --with virtio_net --with virtio_balloon --with virtio";

/// The filesystem UUID, by blkid (the conversion keeps it).
fn fs_uuid(image: &Path) -> String {
    let out = Command::new("blkid")
        .args(["-p", "-s", "UUID", "-o", "value"])
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "blkid {}", image.display());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs one debugfs request on the converted disk's partition; fails on its errors.
fn debugfs(disk: &Path, request: &str) -> String {
    let spec = format!("{}?offset={PARTITION_OFFSET}", disk.display());
    let out = Command::new("debugfs")
        .args(["-R", request, &spec])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // debugfs exits 0 even when the request fails; the banner is its only normal stderr.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs "))
        .collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "debugfs -R {request:?}: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn guest_file(disk: &Path, path: &str) -> String {
    debugfs(disk, &format!("cat {path}"))
}

/// A symlink's target, from debugfs's `stat` ("Fast link dest: ...").
fn guest_link(disk: &Path, path: &str) -> String {
    let stat = debugfs(disk, &format!("stat {path}"));
    stat.lines()
        .find_map(|l| l.trim().strip_prefix("Fast link dest: "))
        .unwrap_or_else(|| panic!("{path} is not a symlink:\n{stat}"))
        .trim_matches('"')
        .to_string()
}

/// Whether `password` matches a `$6$` hash, by openssl (an independent crypt).
fn openssl_verifies(password: &str, hash: &str) -> bool {
    let salt = hash.split('$').nth(2).expect("a $6$salt$hash string");
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", salt, password])
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim_end() == hash
}

/// Converts the fixture with a pipeline file; returns the raw disk and rehost's stdout.
fn convert(dir: &Path, target: &str, pipeline: &str) -> (PathBuf, String) {
    let input = fixture("build-centos5.sh");
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, pipeline).unwrap();
    let disk = dir.join("centos5.raw");
    let out = rehost(&[
        "convert",
        input.to_str().unwrap(),
        "-o",
        disk.to_str().unwrap(),
        "--format",
        "raw",
        "--target",
        target,
        "--config",
        config.to_str().unwrap(),
        "--allow-check-errors",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rehost convert failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (disk, stdout)
}

/// grub.conf as the seed's sample, for the kernel yum installed.
fn grub_conf(root: &str) -> String {
    format!(
        "default=0\ntimeout=3\ntitle CentOS ({NATIVE_KERNEL})\n    root (hd0,0)\n    \
         kernel /boot/vmlinuz-{NATIVE_KERNEL} root={root} ro\n    \
         initrd /boot/initrd-{NATIVE_KERNEL}.img\n"
    )
}

/// The seed's whole STEP 1 for VirtualBox: the company's packages removed before
/// the desktop is installed, runlevel 5, a new root password.
#[test]
fn seed_pipeline_converts_the_centos5_fixture_for_virtualbox() {
    let dir = tempfile::tempdir().unwrap();
    let remove_packages = Path::new(rehost::plugin::stock::WASM_DIR).join("remove_packages.wasm");
    let pipeline = format!(
        "fixers = [\"xen-console\", {:?}, \"centos5-xen2kvm\"]\n\n\
         [fixer.remove-packages]\npackages = [\"realvnc-vnc-server\", \"openldap\"]\n\n\
         [fixer.centos5-xen2kvm]\ndesktop = true\nrunlevel = 5\nroot_password = {PASSWORD:?}\n",
        remove_packages.to_str().unwrap()
    );
    let uuid = fs_uuid(&fixture("build-centos5.sh"));
    let (disk, stdout) = convert(dir.path(), "virtualbox", &pipeline);
    assert!(
        !stdout.contains(PASSWORD),
        "the password was printed:\n{stdout}"
    );
    // The seed's troubleshooting list finds nothing left to fix.
    assert!(stdout.contains("check: 0 errors, 0 warnings"), "{stdout}");

    assert_eq!(
        guest_file(&disk, "/var/log/rehost-calls.log"),
        format!(
            "rpm -q realvnc-vnc-server\n\
             rpm -q openldap\n\
             yum -y remove realvnc-vnc-server openldap\n\
             yum -y groupinstall X Window System GNOME Desktop Environment\n\
             yum -y install kernel mkinitrd grub\n\
             mkinitrd {VIRTIO_WITH} --with ata_piix --with ahci --with sd_mod \
             -f /boot/initrd-{NATIVE_KERNEL}.img {NATIVE_KERNEL}\n"
        )
    );
    let packages = guest_file(&disk, "/var/lib/rpm/rehost-packages");
    assert!(!packages.contains("openldap") && !packages.contains("realvnc"));
    assert!(packages.contains(&format!("kernel-{NATIVE_KERNEL}\n")));

    // xen-console moved the getty to ttyS0; centos5-xen2kvm set runlevel 5.
    assert_eq!(
        guest_file(&disk, "/etc/inittab"),
        SEED_INITTAB
            .replace("id:3:initdefault:", "id:5:initdefault:")
            .replace(
                "xvc0:2345:respawn:/sbin/mingetty xvc0\n",
                "S0:2345:respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
            )
    );
    assert_eq!(
        guest_file(&disk, "/etc/modprobe.conf"),
        "alias scsi_hostadapter ata_piix\nalias scsi_hostadapter1 ahci\nalias eth0 e1000\n"
    );
    assert_eq!(
        guest_file(&disk, "/etc/fstab"),
        format!("UUID={uuid}              /                       ext3    defaults        1 1\n{FSTAB_TAIL}")
    );
    assert_eq!(
        guest_file(&disk, "/boot/grub/grub.conf"),
        grub_conf(&format!("UUID={uuid}"))
    );
    assert_eq!(guest_link(&disk, "/boot/grub/menu.lst"), "grub.conf");
    assert_eq!(
        guest_file(&disk, "/etc/sysconfig/kernel"),
        "UPDATEDEFAULT=yes\nDEFAULTKERNEL=kernel\n"
    );
    // The host replaced the grub.cfg link with its GRUB 2 menu, which offers grub.conf.
    assert!(
        guest_file(&disk, "/boot/grub/grub.cfg").contains("legacy_configfile /boot/grub/grub.conf")
    );
    assert_eq!(guest_file(&disk, "/etc/selinux/config"), SELINUX_DISABLED);
    assert_eq!(guest_file(&disk, "/etc/rc.local"), RC_LOCAL);

    let shadow = guest_file(&disk, "/etc/shadow");
    let root: Vec<&str> = shadow.lines().next().unwrap().split(':').collect();
    assert_eq!(root[0], "root");
    assert!(openssl_verifies(PASSWORD, root[1]), "{}", root[1]);
    assert!(!openssl_verifies("rehost", root[1]));
    assert_eq!(shadow.lines().nth(1), Some("nobody:*:15000:0:99999:7:::"));
}

/// With no fixers named, inspection picks xen-console and centos5-xen2kvm; KVM
/// gets virtio aliases, the device name in fstab, and the swap disk renamed.
#[test]
fn default_fixers_convert_the_centos5_fixture_for_kvm() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "[fixer.centos5-xen2kvm]\nroot_spec = \"device\"\nxen_devices = \"map\"\n";
    let (disk, stdout) = convert(dir.path(), "kvm", pipeline);
    assert!(stdout.contains("xen-console 0.1.0:"), "{stdout}");
    assert!(stdout.contains("centos5-xen2kvm 0.1.0:"), "{stdout}");
    // The swap line names a disk the VM lacks: a warning at most.
    assert!(stdout.contains("check: 0 errors"), "{stdout}");

    assert_eq!(
        guest_file(&disk, "/var/log/rehost-calls.log"),
        format!(
            "yum -y install kernel mkinitrd grub\n\
             mkinitrd {VIRTIO_WITH} -f /boot/initrd-{NATIVE_KERNEL}.img {NATIVE_KERNEL}\n"
        )
    );
    assert_eq!(
        guest_file(&disk, "/etc/modprobe.conf"),
        "alias scsi_hostadapter virtio_blk\nalias eth0 virtio_net\n"
    );
    assert_eq!(
        guest_file(&disk, "/etc/fstab"),
        format!(
            "/dev/vda1              /                       ext3    defaults        1 1\n\
             {FSTAB_TAIL}/dev/vda3              swap                    swap    defaults        0 0\n"
        )
    );
    assert_eq!(
        guest_file(&disk, "/boot/grub/grub.conf"),
        grub_conf("/dev/vda1")
    );
    assert!(guest_file(&disk, "/etc/inittab").contains("\nid:3:initdefault:\n"));
    assert_eq!(guest_file(&disk, "/etc/selinux/config"), SELINUX_DISABLED);
    assert!(
        guest_file(&disk, "/etc/shadow").starts_with("root:$1$centos5$"),
        "unchanged"
    );
}

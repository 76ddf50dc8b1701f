//! /etc/fstab: the root by UUID, Xen disks gone.
//!
//! The root was `/dev/xvda1` (or a cloud label); the VM's disk is sda or vda, so
//! it is mounted by the new filesystem's UUID, which no controller changes. Other
//! Xen disks (`/dev/xvda3` swap, `/dev/xvdb` ephemeral storage) do not exist in the
//! VM, and a missing device in fstab stops systemd's boot in emergency mode.

use rehost_sdk::files::fstab::{Entry, Fstab};
use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::Result;

const FSTAB: &str = "/etc/fstab";

/// Spec prefixes that name a block device (anything else is a file, a pseudo
/// filesystem or a network share).
const DEVICE_SPECS: [&str; 5] = ["/dev/", "UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="];

pub fn fix(
    guest: &dyn Guest,
    root_uuid: &str,
    drop_xen_devices: bool,
    report: &mut Report,
) -> Result<()> {
    let Some(text) = guest.read_optional(FSTAB)? else {
        report.warn("no /etc/fstab: / stays mounted as the kernel mounted it");
        return Ok(());
    };
    let mut fstab = Fstab::parse(&text);
    let mut changes = Vec::new();
    if let Some(change) = mount_root_by_uuid(&mut fstab, root_uuid, report) {
        changes.push(change);
    }
    changes.extend(handle_xen_devices(&mut fstab, drop_xen_devices, report));
    warn_about_missing_devices(&fstab, root_uuid, report);
    if !changes.is_empty() {
        guest.write_string(FSTAB, &fstab.render())?;
        changes.into_iter().for_each(|c| report.changed(c));
    }
    Ok(())
}

fn mount_root_by_uuid(fstab: &mut Fstab, uuid: &str, report: &mut Report) -> Option<String> {
    if uuid.is_empty() {
        report
            .warn("the host gave no UUID for the new root filesystem; / in /etc/fstab left as is");
        return None;
    }
    let spec = format!("UUID={uuid}");
    let Some(old) = fstab.find("/").map(|e| e.spec().to_string()) else {
        report.warn("/etc/fstab has no / entry; / stays mounted as the kernel mounted it");
        return None;
    };
    if old == spec {
        return None;
    }
    fstab.set_spec("/", &spec);
    Some(format!("{FSTAB}: / is mounted by {spec} (was {old})"))
}

/// Comments out (or only warns about) the entries on Xen disks; returns the changes.
fn handle_xen_devices(fstab: &mut Fstab, drop: bool, report: &mut Report) -> Vec<String> {
    let mut changes = Vec::new();
    for index in 0..fstab.lines().len() {
        let line = &fstab.lines()[index];
        let Some(entry) = line.record().filter(|e| e.is_xen_device()) else {
            continue;
        };
        let (spec, file) = (entry.spec().to_string(), entry.file().to_string());
        if drop {
            let disabled = format!(
                "# rehost: disabled, {spec} is a Xen disk the VM does not have: {}",
                line.text()
            );
            fstab.set_text(index, disabled);
            report.warn(format!(
                "{FSTAB}: commented out {spec} ({file}): a Xen disk the VM does not have; \
                 attach a disk and restore the line if you need it"
            ));
            changes.push(format!(
                "{FSTAB}: commented out the entry for {spec} ({file})"
            ));
        } else {
            report.warn(format!(
                "{FSTAB}: {spec} ({file}) is a Xen disk the VM does not have, and boot \
                 stops in emergency mode without it; drop_xen_devices = false keeps it"
            ));
        }
    }
    changes
}

/// The VM's disk holds only the root filesystem: other block devices are only
/// there if someone attaches them, so entries without `nofail` hold up the boot.
fn warn_about_missing_devices(fstab: &Fstab, root_uuid: &str, report: &mut Report) {
    let root_spec = format!("UUID={root_uuid}");
    let missing = |e: &&Entry| {
        e.file() != "/"
            && e.spec() != root_spec
            && !e.is_xen_device()
            && DEVICE_SPECS.iter().any(|p| e.spec().starts_with(p))
            && !e.options().split(',').any(|o| o == "nofail")
    };
    for entry in fstab.records().filter(missing) {
        report.warn(format!(
            "{FSTAB}: {} ({}) is not on the VM's disk, which holds only the root \
             filesystem; attach it, or add nofail or remove the entry, or boot stops \
             in emergency mode",
            entry.spec(),
            entry.file()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::DirGuest;

    fn run(fstab: &str, drop: bool) -> (String, Report) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/fstab"), fstab).unwrap();
        let mut report = Report::default();
        fix(&DirGuest::new(tmp.path()), "1234-ab", drop, &mut report).unwrap();
        let after = std::fs::read_to_string(tmp.path().join("etc/fstab")).unwrap();
        (after, report)
    }

    #[test]
    fn keeping_xen_devices_only_warns() {
        let input = "LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n/dev/xvdb /mnt auto defaults 0 2\n";
        let (after, report) = run(input, false);
        assert_eq!(
            after,
            "UUID=1234-ab / ext4 discard,errors=remount-ro 0 1\n/dev/xvdb /mnt auto defaults 0 2\n"
        );
        assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
        assert!(
            report.warnings[0].contains("/dev/xvdb (/mnt)"),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn warns_about_other_devices_without_nofail() {
        let input = "UUID=1234-ab / ext4 defaults 0 1\nLABEL=UEFI /boot/efi vfat umask=0077 0 1\n\
                     LABEL=scratch /scratch ext4 defaults,nofail 0 2\nproc /proc proc defaults 0 0\n";
        let (after, report) = run(input, true);
        assert_eq!(after, input);
        assert!(report.changes.is_empty());
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].contains("LABEL=UEFI (/boot/efi)"));
    }

    #[test]
    fn no_root_entry_is_a_warning() {
        let (after, report) = run("proc /proc proc defaults 0 0\n", true);
        assert_eq!(after, "proc /proc proc defaults 0 0\n");
        assert!(
            report.warnings[0].contains("no / entry"),
            "{:?}",
            report.warnings
        );
    }
}

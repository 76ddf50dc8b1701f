//! /etc/fstab: the root entry names the new root filesystem, and entries on
//! other Xen disks (`/dev/xvda3` swap...) are dropped or renamed, since the
//! converted disk has only the root partition.

use rehost_sdk::files::fstab::{Entry, Fstab};
use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::Result;

use crate::config::XenDevices;
use crate::target::Target;

const FSTAB: &str = "/etc/fstab";
const XEN_DISK_PREFIX: &str = "/dev/xvd";

pub fn fix(
    guest: &dyn Guest,
    root: &str,
    xen_devices: XenDevices,
    target: &Target,
    report: &mut Report,
) -> Result<()> {
    let Some(text) = guest.read_optional(FSTAB)? else {
        report.warn(format!(
            "{FSTAB} is missing: the boot will not remount / read-write; create it with \
             a `{root} / ...` entry"
        ));
        return Ok(());
    };
    let mut fstab = Fstab::parse(&text);
    let mut changes = Vec::new();
    match fstab.find("/").map(|e| e.spec().to_string()) {
        Some(old) if old != root => {
            fstab.set_spec("/", root);
            changes.push(format!("{FSTAB}: / on {root} (was {old})"));
        }
        Some(_) => {}
        None => report.warn(format!(
            "{FSTAB} has no entry for /; add `{root} / ...` yourself"
        )),
    }
    let others: Vec<(String, String)> = fstab
        .xen_entries()
        .filter(|e| e.file() != "/")
        .map(|e: &Entry| (e.spec().to_string(), e.file().to_string()))
        .collect();
    for (spec, file) in others {
        match xen_devices {
            XenDevices::Drop => {
                fstab.remove_where(|e| e.spec() == spec);
                changes.push(format!("{FSTAB}: dropped {file} on {spec}"));
                report.warn(format!(
                    "{FSTAB}: dropped {file} on {spec}: that Xen disk does not exist on the \
                     converted VM (set xen_devices = \"map\" to keep it under the {} name)",
                    target.name
                ));
            }
            XenDevices::Map => {
                let disk = spec.strip_prefix(XEN_DISK_PREFIX).unwrap_or(&spec);
                let mapped = format!("{}{disk}", target.disk_prefix);
                fstab.replace_spec(&spec, &mapped);
                changes.push(format!("{FSTAB}: {file} on {mapped} (was {spec})"));
                report.warn(format!(
                    "{FSTAB}: {file} is now on {mapped}, which the converted disk does not \
                     have: attach a disk with it, or the mount fails at boot"
                ));
            }
        }
    }
    if !changes.is_empty() {
        guest.write_string(FSTAB, &fstab.render())?;
        changes.into_iter().for_each(|c| report.changed(c));
    }
    Ok(())
}

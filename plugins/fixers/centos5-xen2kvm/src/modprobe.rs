//! /etc/modprobe.conf: the Xen disk and NIC aliases point at the target's
//! drivers; mkinitrd reads the `scsi_hostadapter*` aliases to pick the initrd's
//! disk drivers, so this runs before it.

use rehost_sdk::files::modprobe::{Directive, Modprobe};
use rehost_sdk::fixer::{Guest, Report};
use rehost_sdk::Result;

use crate::target::Target;

const MODPROBE_CONF: &str = "/etc/modprobe.conf";
const XEN_DISK: [&str; 2] = ["xenblk", "xen-blkfront"];
const XEN_NIC: [&str; 2] = ["xennet", "xen-netfront"];
const DISK_ALIAS: &str = "scsi_hostadapter";

pub fn fix(guest: &dyn Guest, target: &Target, report: &mut Report) -> Result<()> {
    let Some(text) = guest.read_optional(MODPROBE_CONF)? else {
        return Ok(());
    };
    let mut conf = Modprobe::parse(&text);
    let mut changes = Vec::new();
    for name in alias_names(&conf, &XEN_NIC) {
        conf.set_alias_module(&name, target.nic_module);
        changes.push(format!("{name} → {}", target.nic_module));
    }
    let disks = alias_names(&conf, &XEN_DISK);
    if let Some((first, others)) = disks.split_first() {
        // Extra Xen disk aliases go; the target's drivers follow the first one.
        for name in others {
            conf.remove_alias(name);
            changes.push(format!("removed {name}"));
        }
        let (driver, extra) = target
            .disk_modules
            .split_first()
            .expect("every target has a disk driver");
        conf.set_alias_module(first, driver);
        changes.push(format!("{first} → {driver}"));
        let mut after = conf
            .position(|d| d.alias_name() == Some(first.as_str()))
            .expect("the alias was just set");
        for module in extra {
            let name = free_disk_alias(&conf);
            after += 1;
            conf.insert(after, Directive::new("alias", &[&name, module]));
            changes.push(format!("added {name} → {module}"));
        }
    }
    if !changes.is_empty() {
        guest.write_string(MODPROBE_CONF, &conf.render())?;
        report.changed(format!(
            "{MODPROBE_CONF}: Xen drivers replaced by {}'s: {}",
            target.name,
            changes.join(", ")
        ));
    }
    Ok(())
}

/// Names of the aliases (`eth0`, `scsi_hostadapter`) that load one of `modules`.
fn alias_names(conf: &Modprobe, modules: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = conf
        .aliases_to(modules)
        .filter_map(|d| d.alias_name().map(str::to_string))
        .collect();
    names.dedup();
    names
}

/// The first of `scsi_hostadapter1`, `scsi_hostadapter2`... no alias uses.
fn free_disk_alias(conf: &Modprobe) -> String {
    (1..)
        .map(|n| format!("{DISK_ALIAS}{n}"))
        .find(|name| {
            conf.aliases()
                .all(|d| d.alias_name() != Some(name.as_str()))
        })
        .expect("an unused alias name exists")
}

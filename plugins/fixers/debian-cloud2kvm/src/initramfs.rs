//! The initrd: initramfs-tools told to pack the target's drivers, then rebuilt.

use std::collections::BTreeSet;

use rehost_sdk::files::keyvalue::KeyValue;
use rehost_sdk::files::kmod;
use rehost_sdk::fixer::{info, FileKind, Guest, Report};
use rehost_sdk::{fail, Error, Result};

use crate::exec;

const DIR: &str = "/etc/initramfs-tools";
const MODULES: &str = "/etc/initramfs-tools/modules";
const CONF: &str = "/etc/initramfs-tools/initramfs.conf";
const CONF_D: &str = "/etc/initramfs-tools/conf.d";
const UPDATE_INITRAMFS: &str = "/usr/sbin/update-initramfs";
/// Compressing an initrd of MODULES=most takes under a minute; this is generous.
const UPDATE_SECS: u32 = 600;

const MOST_NOTE: &str = "# rehost: MODULES=dep packs only the drivers of the machine the initrd \
is built on, and rehost builds it in a chroot on the conversion host, not on the VM: use most.";

/// Makes initramfs-tools pack `modules` and every common driver; returns whether
/// its configuration changed (so the initrd must be rebuilt).
pub fn configure(
    guest: &dyn Guest,
    hardware: &str,
    modules: &[String],
    report: &mut Report,
) -> Result<bool> {
    if !guest.exists(DIR)? {
        return Err(fail(format!(
            "{DIR} does not exist: this guest does not build its initrd with initramfs-tools, \
             which this fixer configures and runs (install initramfs-tools in the guest)"
        )));
    }
    let listed = list_modules(guest, hardware, modules, report)?;
    let most = use_most_modules(guest, report)?;
    Ok(listed || most)
}

/// Appends the modules /etc/initramfs-tools/modules does not list yet.
fn list_modules(
    guest: &dyn Guest,
    hardware: &str,
    wanted: &[String],
    report: &mut Report,
) -> Result<bool> {
    let text = guest.read_optional(MODULES)?.unwrap_or_default();
    // One module per line, optionally with arguments; `#` starts a comment line.
    let listed: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| !word.starts_with('#'))
        .collect();
    let mut missing: Vec<&str> = Vec::new();
    for module in wanted {
        if !listed.contains(module.as_str()) && !missing.contains(&module.as_str()) {
            missing.push(module);
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    let mut out = text.clone();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "# rehost: drivers the initrd needs to mount / on {hardware} hardware\n"
    ));
    for module in &missing {
        out.push_str(module);
        out.push('\n');
    }
    guest.write_string(MODULES, &out)?;
    report.changed(format!("{MODULES}: added {}", missing.join(", ")));
    Ok(true)
}

/// Turns MODULES=dep into MODULES=most wherever initramfs-tools reads it
/// (initramfs.conf, then conf.d/* which override it).
fn use_most_modules(guest: &dyn Guest, report: &mut Report) -> Result<bool> {
    let mut files = vec![CONF.to_string()];
    if guest.exists(CONF_D)? {
        for name in guest.list_dir(CONF_D)? {
            let path = format!("{CONF_D}/{name}");
            if guest.stat(&path)?.kind != FileKind::Directory {
                files.push(path);
            }
        }
    }
    let mut changed = false;
    for path in files {
        let Some(text) = guest.read_optional(&path)? else {
            continue;
        };
        let mut conf = KeyValue::parse(&text);
        // The last assignment is the one the shell keeps.
        let last = conf.rposition(|a| a.key() == "MODULES");
        let Some(index) = last.filter(|_| conf.get("MODULES") == Some("dep")) else {
            continue;
        };
        conf.set("MODULES", "most");
        conf.insert_text(index, MOST_NOTE);
        guest.write_string(&path, &conf.render())?;
        report.changed(format!(
            "{path}: MODULES=most instead of dep (dep would pack the conversion host's drivers)"
        ));
        changed = true;
    }
    Ok(changed)
}

/// Whether the initrd of kernel `version` must be (re)built: it is missing, cannot
/// be read, or lacks one of `wanted` that the kernel has as a loadable module
/// (a built-in driver needs no initrd, and one the kernel lacks cannot be added).
pub fn needs_rebuild(guest: &dyn Guest, version: &str, wanted: &[String]) -> Result<bool> {
    let initrd = initrd_path(version);
    if !guest.exists(&initrd)? {
        return Ok(true);
    }
    let packed: BTreeSet<String> = match guest.initrd_modules(&initrd) {
        Ok(names) => names.into_iter().collect(),
        Err(Error::NotFound(_)) => return Ok(true),
        Err(e) => {
            info(&format!(
                "{initrd}: cannot list its modules ({e}); rebuilding it"
            ));
            return Ok(true);
        }
    };
    let base = format!("/lib/modules/{version}");
    // Without modules.dep, anything not built in may be a module: assume so.
    let loadable = guest
        .read_optional(&format!("{base}/modules.dep"))?
        .map(|text| kmod::listed_modules(&text));
    let builtin = kmod::listed_modules(
        &guest
            .read_optional(&format!("{base}/modules.builtin"))?
            .unwrap_or_default(),
    );
    let missing: Vec<String> = wanted
        .iter()
        .map(|m| kmod::normalise(m))
        .filter(|m| !packed.contains(m))
        .filter(|m| match &loadable {
            Some(loadable) => loadable.contains(m),
            None => !builtin.contains(m),
        })
        .collect();
    if missing.is_empty() {
        info(&format!(
            "{initrd} already has the drivers it needs: not rebuilt"
        ));
        return Ok(false);
    }
    info(&format!("{initrd} lacks {}", missing.join(", ")));
    Ok(true)
}

/// Rebuilds (or creates, when missing) the initrd of kernel `version`.
pub fn rebuild(guest: &dyn Guest, version: &str, report: &mut Report) -> Result<()> {
    if !guest.exists(UPDATE_INITRAMFS)? {
        return Err(fail(format!(
            "{UPDATE_INITRAMFS} is missing: reinstall initramfs-tools in the guest"
        )));
    }
    let initrd = initrd_path(version);
    let mode = if guest.exists(&initrd)? { "-u" } else { "-c" };
    exec::run(
        guest,
        &[UPDATE_INITRAMFS, mode, "-k", version],
        &[],
        UPDATE_SECS,
    )?;
    report.changed(format!(
        "{initrd}: rebuilt with update-initramfs for the target's drivers"
    ));
    Ok(())
}

pub fn initrd_path(version: &str) -> String {
    format!("/boot/initrd.img-{version}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::DirGuest;
    use std::fs;

    #[test]
    fn dep_in_conf_d_becomes_most_and_modules_without_newline_get_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("etc/initramfs-tools");
        fs::create_dir_all(dir.join("conf.d")).unwrap();
        fs::write(dir.join("initramfs.conf"), "MODULES=most\n").unwrap();
        fs::write(
            dir.join("conf.d/xen"),
            "# built for Xen\nMODULES=dep # small\n",
        )
        .unwrap();
        fs::write(dir.join("modules"), "virtio_blk").unwrap();
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        let wanted = ["virtio_pci".to_string(), "virtio_blk".to_string()];
        assert!(configure(&guest, "KVM", &wanted, &mut report).unwrap());
        assert_eq!(
            fs::read_to_string(dir.join("conf.d/xen")).unwrap(),
            format!("# built for Xen\n{MOST_NOTE}\nMODULES=most # small\n")
        );
        assert_eq!(
            fs::read_to_string(dir.join("initramfs.conf")).unwrap(),
            "MODULES=most\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("modules")).unwrap(),
            "virtio_blk\n# rehost: drivers the initrd needs to mount / on KVM hardware\nvirtio_pci\n"
        );
        assert!(!configure(&guest, "KVM", &wanted, &mut Report::default()).unwrap());
    }

    #[test]
    fn no_initramfs_tools_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = configure(
            &DirGuest::new(tmp.path()),
            "KVM",
            &[],
            &mut Report::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("install initramfs-tools"), "{err}");
    }
}

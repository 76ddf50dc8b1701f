//! The kernel the VM boots: the newest non-Xen kernel in /boot, and its initrd
//! rebuilt with the target's drivers (the seed's mkinitrd line).

use std::cmp::Ordering;

use rehost_sdk::files::keyvalue::KeyValue;
use rehost_sdk::fixer::{FixContext, Guest, Report};
use rehost_sdk::Result;

use crate::exec;
use crate::target::Target;

const MKINITRD: &str = "/sbin/mkinitrd";
/// Tells new-kernel-pkg which kernel package's updates become grub.conf's default.
const SYSCONFIG_KERNEL: &str = "/etc/sysconfig/kernel";
const XEN_PACKAGE: &str = "kernel-xen";
const NATIVE_PACKAGE: &str = "kernel";

/// The newest kernel in /boot that is not Xen-only. /boot is listed again, not
/// taken from `ctx.kernels`, because yum may just have installed one.
pub fn newest_native(guest: &dyn Guest, ctx: &FixContext) -> Result<Option<String>> {
    let known_xen = |version: &str| {
        ctx.kernels
            .iter()
            .any(|k| k.version == version && k.xen_only)
    };
    Ok(guest
        .list_dir("/boot")?
        .into_iter()
        .filter_map(|name| name.strip_prefix("vmlinuz-").map(str::to_string))
        // Red Hat's Xen kernels are `...el5xen`, as the host's inspection rules.
        .filter(|version| !version.ends_with("xen") && !known_xen(version))
        .max_by(|a, b| compare_versions(a, b)))
}

pub fn initrd_path(version: &str) -> String {
    format!("/boot/initrd-{version}.img")
}

/// `mkinitrd --with MOD... -f /boot/initrd-VERSION.img VERSION`.
pub fn rebuild_initrd(
    guest: &dyn Guest,
    version: &str,
    target: &Target,
    report: &mut Report,
) -> Result<()> {
    let modules = target.initrd_modules();
    let initrd = initrd_path(version);
    let mut argv = vec![MKINITRD];
    for module in &modules {
        argv.extend(["--with", module]);
    }
    argv.extend(["-f", &initrd, version]);
    exec::run(guest, &argv)?;
    report.changed(format!(
        "{initrd}: rebuilt with mkinitrd for {} ({})",
        target.name,
        modules.join(", ")
    ));
    Ok(())
}

/// A Xen instance says `DEFAULTKERNEL=kernel-xen`, so the next kernel-xen update
/// would make a Xen kernel grub.conf's default and the VM would stop booting.
pub fn default_to_native_updates(guest: &dyn Guest, report: &mut Report) -> Result<()> {
    let Some(text) = guest.read_optional(SYSCONFIG_KERNEL)? else {
        return Ok(());
    };
    let mut conf = KeyValue::parse(&text);
    if conf.get("DEFAULTKERNEL") == Some(XEN_PACKAGE) {
        conf.set("DEFAULTKERNEL", NATIVE_PACKAGE);
        guest.write_string(SYSCONFIG_KERNEL, &conf.render())?;
        report.changed(format!(
            "{SYSCONFIG_KERNEL}: DEFAULTKERNEL={NATIVE_PACKAGE} (was {XEN_PACKAGE}), so kernel \
             updates keep a native kernel as grub.conf's default"
        ));
    }
    Ok(())
}

/// Orders versions as rpm does: runs of digits compare as numbers, runs of
/// letters as text, a number beats text, separators only separate, and more
/// segments win. So 2.6.18-348.3.1.el5 is newer than 2.6.18-348.el5.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    segments(a).cmp(&segments(b))
}

/// Variant order is the ordering: text is older than a number.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Segment<'a> {
    Text(&'a str),
    Number(u64),
}

fn segments(version: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for mut rest in version.split(|c: char| !c.is_ascii_alphanumeric()) {
        while let Some(first) = rest.chars().next() {
            let digits = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            out.push(match run.parse() {
                Ok(n) if digits => Segment::Number(n),
                _ => Segment::Text(run),
            });
            rest = tail;
        }
    }
    out
}

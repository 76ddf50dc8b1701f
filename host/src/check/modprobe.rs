//! Module aliases that name Xen drivers (`alias scsi_hostadapter xenblk`,
//! `alias eth0 xennet`). RHEL 5's mkinitrd builds the initrd from the
//! scsi_hostadapter aliases, so such a guest rebuilds an initrd without the real
//! disk driver; the NIC alias loads a driver for a card that is not there.

use super::findings::{Finding, Report};
use super::resolve::ResolveError;
use super::{Context, Target};

const MODPROBE_CONF: &str = "/etc/modprobe.conf";
const MODPROBE_D: &str = "/etc/modprobe.d";

/// Xen front-end drivers, with `-` written as `_`.
const XEN_BLOCK: [&str; 2] = ["xenblk", "xen_blkfront"];
const XEN_NET: [&str; 2] = ["xennet", "xen_netfront"];

pub(super) fn check(cx: &Context, report: &mut Report) {
    match files(cx) {
        Ok(files) => {
            let mut found = false;
            for (path, text) in &files {
                for (line, alias, module) in xen_aliases(text) {
                    found = true;
                    report.push(finding(cx.input.target, path, line, &alias, &module));
                }
            }
            if !found {
                report.push(Finding::ok(
                    "modprobe.xen-alias",
                    format!("no Xen driver aliases in {MODPROBE_CONF} or {MODPROBE_D}"),
                ));
            }
        }
        Err(e) => report.push(Finding::error(
            "modprobe.xen-alias",
            format!("cannot read {e}"),
            "check the modprobe configuration in the guest",
        )),
    }
}

/// /etc/modprobe.conf and every file in /etc/modprobe.d (old module-init-tools
/// read them all, not only `*.conf`), as (guest path, text).
fn files(cx: &Context) -> Result<Vec<(String, String)>, ResolveError> {
    let mut paths = vec![MODPROBE_CONF.to_owned()];
    for name in cx.guest.list_dir(MODPROBE_D)? {
        let path = format!("{MODPROBE_D}/{name}");
        // Resolved inside the guest, so is_file follows no host link.
        if cx.guest.resolve(&path)?.is_some_and(|host| host.is_file()) {
            paths.push(path);
        }
    }
    let mut files = Vec::new();
    for path in paths {
        if let Some(text) = cx.guest.read_text(&path)? {
            files.push((path, text));
        }
    }
    Ok(files)
}

/// `alias NAME MODULE` lines whose module is a Xen driver: (line, NAME, MODULE).
fn xen_aliases(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let mut words = line.split_whitespace();
            if words.next()? != "alias" {
                return None;
            }
            let (alias, module) = (words.next()?, words.next()?);
            let normalised = module.replace('-', "_");
            let xen =
                XEN_BLOCK.contains(&normalised.as_str()) || XEN_NET.contains(&normalised.as_str());
            xen.then(|| (index + 1, alias.to_owned(), module.to_owned()))
        })
        .collect()
}

fn finding(target: Target, path: &str, line: usize, alias: &str, module: &str) -> Finding {
    let block = XEN_BLOCK.contains(&module.replace('-', "_").as_str());
    let (why, replacement) = match (block, target) {
        (true, Target::Virtualbox) => (
            "mkinitrd would build an initrd without the disk driver",
            "ahci",
        ),
        (true, Target::Kvm) => (
            "mkinitrd would build an initrd without the disk driver",
            "virtio_blk",
        ),
        (false, Target::Virtualbox) => ("the network card needs e1000", "e1000"),
        (false, Target::Kvm) => ("the network card needs virtio_net", "virtio_net"),
    };
    Finding::error(
        "modprobe.xen-alias",
        format!("{path}:{line}: `alias {alias} {module}` names a Xen driver: {why}"),
        format!("change line {line} to `alias {alias} {replacement}`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_xen_aliases_only() {
        let text = "alias scsi_hostadapter xenblk\nalias eth0 xen-netfront\n# alias eth1 xennet\n\
                    alias scsi_hostadapter1 ahci\noptions xenblk foo\n";
        let found = xen_aliases(text);
        assert_eq!(
            found,
            [
                (1, "scsi_hostadapter".to_owned(), "xenblk".to_owned()),
                (2, "eth0".to_owned(), "xen-netfront".to_owned())
            ]
        );
    }
}

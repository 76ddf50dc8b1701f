//! The NIC's name and DHCP on it.
//!
//! On Xen the instance's NIC was eth0 (netfront has no PCI slot for udev to name
//! it after); on KVM or VirtualBox udev's predictable names would call it ens3 or
//! enp0s3, which the cloud's network configuration does not match. Booting with
//! `net.ifnames=0` keeps the kernel's name, eth0, whatever the NIC model: the
//! simplest robust answer. Then the guest's configuration must run DHCP on eth0;
//! when nothing does (a Nitro instance configured ens5, say) this adds it.

use rehost_sdk::fixer::{FileKind, Guest, Report};
use rehost_sdk::Result;

/// The kernel argument that keeps the kernel's NIC names.
pub const CMDLINE: &str = "net.ifnames=0";
const NIC: &str = "eth0";

const INTERFACES: &str = "/etc/network/interfaces";
const INTERFACES_D: &str = "/etc/network/interfaces.d";
const NETWORKD: &str = "/etc/systemd/network";
const NETWORKD_ETH0: &str = "/etc/systemd/network/50-rehost-eth0.network";
const NETWORKD_ENABLED: &str =
    "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service";
const NETPLAN: &str = "/etc/netplan";

const IFUPDOWN_STANZA: &str = "
# rehost: the VM boots with net.ifnames=0, so its NIC is eth0.
allow-hotplug eth0
iface eth0 inet dhcp
";

const NETWORKD_TEXT: &str = "\
# rehost: the VM boots with net.ifnames=0, so its NIC is eth0.
[Match]
Name=eth0

[Network]
DHCP=yes
";

/// Makes sure something runs DHCP on eth0 at boot.
pub fn ensure_eth0_dhcp(guest: &dyn Guest, cloud_init: bool, report: &mut Report) -> Result<()> {
    if ifupdown_configures_eth0(guest)?
        || networkd_configures_eth0(guest)?
        || netplan_mentions_eth0(guest)?
    {
        return Ok(());
    }
    if cloud_init {
        // A new instance to cloud-init: it writes DHCP on the NIC it finds at first boot.
        return Ok(());
    }
    if guest.exists(INTERFACES)? {
        let text = guest.read_string(INTERFACES)?;
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        guest.write_string(INTERFACES, &format!("{text}{sep}{IFUPDOWN_STANZA}"))?;
        report.changed(format!(
            "{INTERFACES}: DHCP on eth0 (no configuration named it)"
        ));
    } else if guest.exists(NETWORKD_ENABLED)? && !guest.exists(NETPLAN)? {
        guest.write_string(NETWORKD_ETH0, NETWORKD_TEXT)?;
        report.changed(format!(
            "{NETWORKD_ETH0}: DHCP on eth0 (no .network file matched it)"
        ));
    } else {
        report.warn(
            "found no network configuration for eth0 (ifupdown, systemd-networkd or netplan); \
             the VM boots with net.ifnames=0, so configure DHCP on eth0",
        );
    }
    Ok(())
}

/// Regular files in `dir` with the given suffix (all when empty), as guest paths.
fn files_in(guest: &dyn Guest, dir: &str, suffix: &str) -> Result<Vec<String>> {
    if !guest.exists(dir)? {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for name in guest.list_dir(dir)? {
        let path = format!("{dir}/{name}");
        if name.ends_with(suffix) && guest.stat(&path)?.kind != FileKind::Directory {
            files.push(path);
        }
    }
    Ok(files)
}

/// An `iface eth0 ...` stanza in /etc/network/interfaces or interfaces.d.
fn ifupdown_configures_eth0(guest: &dyn Guest) -> Result<bool> {
    let mut files = vec![INTERFACES.to_string()];
    files.extend(files_in(guest, INTERFACES_D, "")?);
    for path in files {
        let Some(text) = guest.read_optional(&path)? else {
            continue;
        };
        let stanza = |line: &str| {
            let mut words = line.split_whitespace();
            words.next() == Some("iface") && words.next() == Some(NIC)
        };
        if text.lines().any(stanza) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A systemd-networkd .network file whose [Match] takes eth0.
fn networkd_configures_eth0(guest: &dyn Guest) -> Result<bool> {
    for path in files_in(guest, NETWORKD, ".network")? {
        if matches_eth0(&guest.read_string(&path)?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a .network file applies to eth0: a `Name=` pattern in [Match] that
/// takes it, or no `Name=` at all (it matches on something else, such as Type=).
fn matches_eth0(network: &str) -> bool {
    let mut in_match = false;
    let mut names: Option<Vec<&str>> = None;
    for line in network.lines().map(str::trim) {
        if line.starts_with('[') {
            in_match = line == "[Match]";
        } else if let Some(value) = line.strip_prefix("Name=").filter(|_| in_match) {
            names
                .get_or_insert_with(Vec::new)
                .extend(value.split_whitespace());
        }
    }
    names.is_none_or(|names| names.iter().any(|pattern| glob_match(pattern, NIC)))
}

/// Shell-style glob with `*` and `?`, as networkd matches interface names.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.chars().next() {
        None => name.is_empty(),
        Some('*') => (0..=name.len())
            .filter(|&i| name.is_char_boundary(i))
            .any(|i| glob_match(&pattern[1..], &name[i..])),
        Some(p) => name.chars().next().is_some_and(|n| {
            (p == '?' || p == n) && glob_match(&pattern[p.len_utf8()..], &name[n.len_utf8()..])
        }),
    }
}

/// Netplan YAML is not parsed here: a file naming eth0 is taken as configuring it.
fn netplan_mentions_eth0(guest: &dyn Guest) -> Result<bool> {
    for path in files_in(guest, NETPLAN, ".yaml")? {
        if guest.read_string(&path)?.contains(NIC) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehost_sdk::fixer::DirGuest;
    use std::fs;

    #[test]
    fn globs() {
        for (pattern, hit) in [
            ("eth0", true),
            ("eth*", true),
            ("e*", true),
            ("*", true),
            ("et?0", true),
            ("ens*", false),
            ("eth01", false),
            ("", false),
        ] {
            assert_eq!(glob_match(pattern, "eth0"), hit, "{pattern}");
        }
    }

    #[test]
    fn network_files_match_by_name_in_the_match_section_only() {
        assert!(matches_eth0(
            "[Match]\nName=eth0 ens* enp*\n\n[Network]\nDHCP=yes\n"
        ));
        assert!(!matches_eth0("[Match]\nName=ens5\n[Link]\nName=eth0\n"));
        assert!(matches_eth0("[Match]\nType=ether\n[Network]\nDHCP=yes\n"));
        assert!(matches_eth0("[Match]\nName=ens5\nName=eth*\n"));
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let host = tmp.path().join(path);
            fs::create_dir_all(host.parent().unwrap()).unwrap();
            fs::write(host, text).unwrap();
        }
        tmp
    }

    #[test]
    fn ifupdown_on_ens5_gets_an_eth0_stanza() {
        let before = "auto lo\niface lo inet loopback\n\nauto ens5\niface ens5 inet dhcp\n";
        let tmp = tree(&[("etc/network/interfaces", before)]);
        let guest = DirGuest::new(tmp.path());
        let mut report = Report::default();
        ensure_eth0_dhcp(&guest, false, &mut report).unwrap();
        let after = fs::read_to_string(tmp.path().join("etc/network/interfaces")).unwrap();
        assert_eq!(after, format!("{before}{IFUPDOWN_STANZA}"));
        let mut again = Report::default();
        ensure_eth0_dhcp(&guest, false, &mut again).unwrap();
        assert_eq!((report.changes.len(), again.changes.len()), (1, 0));
    }

    #[test]
    fn eth0_in_interfaces_d_or_cloud_init_needs_nothing() {
        let tmp = tree(&[
            (
                "etc/network/interfaces",
                "source /etc/network/interfaces.d/*\n",
            ),
            (
                "etc/network/interfaces.d/50-cloud-init",
                "auto eth0\niface eth0 inet dhcp\n",
            ),
        ]);
        let mut report = Report::default();
        ensure_eth0_dhcp(&DirGuest::new(tmp.path()), false, &mut report).unwrap();
        let tmp = tree(&[(
            "etc/netplan/50-cloud-init.yaml",
            "network:\n  ethernets:\n    ens5: {dhcp4: true}\n",
        )]);
        ensure_eth0_dhcp(&DirGuest::new(tmp.path()), true, &mut report).unwrap();
        assert!(report.changes.is_empty() && report.warnings.is_empty());
    }

    #[test]
    fn networkd_on_ens5_gets_an_eth0_file() {
        let tmp = tree(&[
            (
                "etc/systemd/network/10-ens5.network",
                "[Match]\nName=ens5\n[Network]\nDHCP=yes\n",
            ),
            (
                "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                "",
            ),
        ]);
        let mut report = Report::default();
        ensure_eth0_dhcp(&DirGuest::new(tmp.path()), false, &mut report).unwrap();
        let written = fs::read_to_string(
            tmp.path()
                .join("etc/systemd/network/50-rehost-eth0.network"),
        )
        .unwrap();
        assert_eq!(written, NETWORKD_TEXT);
    }

    #[test]
    fn nothing_to_configure_is_a_warning() {
        let tmp = tree(&[("etc/hostname", "x\n")]);
        let mut report = Report::default();
        ensure_eth0_dhcp(&DirGuest::new(tmp.path()), false, &mut report).unwrap();
        assert!(report.changes.is_empty());
        assert!(report.warnings[0].contains("no network configuration for eth0"));
    }
}

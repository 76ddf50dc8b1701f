//! The guest's OS type for VirtualBox: the CIM id of the OVF's
//! OperatingSystemSection and the `vbox:OSType` name, 32- or 64-bit.

use rehost_sdk::packager::OsInfo;

/// A guest OS type VirtualBox knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestOs {
    /// CIM_OperatingSystem OsType (DMTF), as VirtualBox exports it.
    pub cim_id: u32,
    /// VirtualBox's OS type id.
    pub vbox: &'static str,
    pub is_64bit: bool,
}

/// Families VirtualBox has a type for: (os-release ids, 32-bit, 64-bit).
const FAMILIES: &[(&[&str], GuestOs, GuestOs)] = &[
    (
        &["ubuntu"],
        os(93, "Ubuntu", false),
        os(94, "Ubuntu_64", true),
    ),
    (
        &["debian"],
        os(95, "Debian", false),
        os(96, "Debian_64", true),
    ),
    (
        &["rhel", "centos", "fedora", "rocky", "almalinux", "ol"],
        os(79, "RedHat", false),
        os(80, "RedHat_64", true),
    ),
];

const LINUX: (GuestOs, GuestOs) = (os(36, "Linux26", false), os(101, "Linux26_64", true));

const fn os(cim_id: u32, vbox: &'static str, is_64bit: bool) -> GuestOs {
    GuestOs {
        cim_id,
        vbox,
        is_64bit,
    }
}

/// The most specific type for the guest: its own id first, then its ID_LIKE
/// (so Linux Mint is Ubuntu), else generic Linux.
pub fn guest_os(info: &OsInfo) -> GuestOs {
    let is_64bit = matches!(info.arch.as_str(), "x86_64" | "amd64");
    let pick = |(i686, x86_64): (GuestOs, GuestOs)| if is_64bit { x86_64 } else { i686 };
    std::iter::once(&info.id)
        .chain(&info.id_like)
        .find_map(|id| {
            FAMILIES
                .iter()
                .find(|(ids, _, _)| ids.contains(&id.to_ascii_lowercase().as_str()))
                .map(|&(_, i686, x86_64)| pick((i686, x86_64)))
        })
        .unwrap_or_else(|| pick(LINUX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, like: &[&str], arch: &str) -> OsInfo {
        OsInfo {
            id: id.into(),
            version_id: String::new(),
            pretty_name: String::new(),
            id_like: like.iter().map(|s| s.to_string()).collect(),
            arch: arch.into(),
        }
    }

    #[test]
    fn known_families_get_their_own_type_in_both_widths() {
        let cases = [
            ("debian", "x86_64", 96, "Debian_64"),
            ("debian", "i686", 95, "Debian"),
            ("ubuntu", "x86_64", 94, "Ubuntu_64"),
            ("ubuntu", "i686", 93, "Ubuntu"),
            ("centos", "x86_64", 80, "RedHat_64"),
            ("rhel", "i386", 79, "RedHat"),
        ];
        for (id, arch, cim, vbox) in cases {
            let os = guest_os(&info(id, &[], arch));
            assert_eq!((os.cim_id, os.vbox), (cim, vbox), "{id} {arch}");
        }
    }

    #[test]
    fn derivatives_follow_id_like_and_others_are_generic_linux() {
        assert_eq!(
            guest_os(&info("linuxmint", &["ubuntu", "debian"], "x86_64")).vbox,
            "Ubuntu_64"
        );
        let other = guest_os(&info("gentoo", &[], "x86_64"));
        assert_eq!((other.cim_id, other.vbox), (101, "Linux26_64"));
        assert_eq!(guest_os(&info("", &[], "i686")).cim_id, 36);
    }
}

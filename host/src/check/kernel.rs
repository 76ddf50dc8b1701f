//! What a guest kernel is and which drivers it can use: its release, whether it
//! is a Xen-only build, and its built-in and loadable modules.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::initrd::module_name;
use super::resolve::{ensure_regular_file, GuestRoot, ResolveError};

/// A kernel driver: its module name and the Kconfig symbol that builds it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Driver {
    pub module: &'static str,
    pub config: &'static str,
}

/// The release string of a kernel image (`6.1.0-18-amd64`): from the bzImage
/// setup header when there is one, else from the file name (`vmlinuz-<release>`).
pub(super) fn release(host_path: &Path) -> Option<String> {
    header_release(host_path)
        .ok()
        .flatten()
        .or_else(|| file_name_release(host_path))
}

/// x86 boot protocol: "HdrS" at 0x202, and at 0x20E a pointer (minus 0x200) to
/// a NUL-terminated string that starts with the release.
fn header_release(path: &Path) -> io::Result<Option<String>> {
    ensure_regular_file(path)?;
    let mut file = File::open(path)?;
    let mut header = [0u8; 0x210];
    file.read_exact(&mut header)?;
    if &header[0x202..0x206] != b"HdrS" {
        return Ok(None);
    }
    let pointer = u16::from_le_bytes([header[0x20e], header[0x20f]]);
    if pointer == 0 {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(u64::from(pointer) + 0x200))?;
    let mut text = [0u8; 128];
    let got = file.read(&mut text)?;
    let release = text[..got]
        .split(|&b| b == 0 || b == b' ')
        .next()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .filter(|r| !r.is_empty());
    Ok(release)
}

fn file_name_release(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    ["vmlinuz-", "vmlinux-", "kernel-", "bzImage-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .filter(|release| release.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// True for kernels built only for Xen paravirtual guests: RHEL/CentOS 5's
/// `2.6.18-...el5xen`, old Debian's `-xen-686`/`-xen-amd64`, Ubuntu 10.04's `-ec2`.
/// They cannot boot on bare (virtual) hardware.
pub(super) fn is_xen_only(release: &str) -> bool {
    release.ends_with("xen") || release.contains("-xen-") || release.ends_with("-ec2")
}

/// The modules a kernel release has, built in or on disk.
#[derive(Debug, Default)]
pub(super) struct Modules {
    /// Module names from /lib/modules/<release>/modules.builtin.
    builtin: BTreeSet<String>,
    /// `CONFIG_*=y` symbols from /boot/config-<release>.
    built_in_config: BTreeSet<String>,
    /// Module files under /lib/modules/<release>/.
    on_disk: BTreeSet<String>,
    /// Whether /lib/modules/<release>/ exists at all.
    pub dir_found: bool,
}

impl Modules {
    pub fn load(guest: &GuestRoot, release: &str) -> Result<Self, ResolveError> {
        let dir = format!("/lib/modules/{release}");
        let builtin = guest
            .read_text(&format!("{dir}/modules.builtin"))?
            .unwrap_or_default()
            .lines()
            .filter_map(|line| module_name(line.rsplit('/').next().unwrap_or(line)))
            .collect();
        let built_in_config = guest
            .read_text(&format!("/boot/config-{release}"))?
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix("CONFIG_")?.strip_suffix("=y"))
            .map(str::to_owned)
            .collect();
        let mut modules = Modules {
            builtin,
            built_in_config,
            ..Modules::default()
        };
        if let Some(host_dir) = guest.resolve(&dir)? {
            modules.dir_found = host_dir.is_dir();
            collect_module_files(&host_dir, &mut modules.on_disk)
                .map_err(|source| ResolveError::Io { path: dir, source })?;
        }
        Ok(modules)
    }

    pub fn is_builtin(&self, driver: Driver) -> bool {
        self.builtin.contains(driver.module) || self.built_in_config.contains(driver.config)
    }

    pub fn has_module_file(&self, driver: Driver) -> bool {
        self.on_disk.contains(driver.module)
    }
}

/// How to rebuild `initrd` for `release` with the guest's own initramfs tool,
/// adding `modules` to it.
pub(super) fn initrd_rebuild_hint(
    guest: &GuestRoot,
    initrd: &str,
    release: &str,
    modules: &[&str],
) -> String {
    let has = |path: &str| guest.exists(path).unwrap_or(false);
    let list = modules.join(" ");
    if has("/usr/sbin/update-initramfs") {
        if modules.is_empty() {
            format!("run `update-initramfs -c -k {release}` in the guest")
        } else {
            format!(
                "add {list} (one per line) to /etc/initramfs-tools/modules, \
                 then run `update-initramfs -u -k {release}` in the guest"
            )
        }
    } else if has("/usr/bin/dracut") || has("/usr/sbin/dracut") || has("/sbin/dracut") {
        let add = if modules.is_empty() {
            String::new()
        } else {
            format!(" --add-drivers '{list}'")
        };
        format!("run `dracut -f{add} {initrd} {release}` in the guest")
    } else if has("/sbin/mkinitrd") || has("/usr/sbin/mkinitrd") {
        let add: String = modules.iter().map(|m| format!(" --with={m}")).collect();
        format!("run `mkinitrd -f{add} {initrd} {release}` in the guest")
    } else if modules.is_empty() {
        format!("rebuild {initrd} for {release} with the guest's initramfs tool")
    } else {
        format!("rebuild {initrd} for {release} with the guest's initramfs tool, including {list}")
    }
}

/// Adds the module names of every module file below `dir`. Symlinks are not
/// followed: `build` and `source` point at (host-absolute) kernel sources.
fn collect_module_files(dir: &Path, names: &mut BTreeSet<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            collect_module_files(&entry.path(), names)?;
        } else if file_type.is_file() {
            names.extend(module_name(&entry.file_name().to_string_lossy()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_only_releases() {
        for xen in [
            "2.6.18-348.el5xen",
            "2.6.26-2-xen-686",
            "2.6.32-341-ec2",
            "2.6.18-xen",
        ] {
            assert!(is_xen_only(xen), "{xen}");
        }
        for bare in [
            "2.6.18-348.el5",
            "6.1.0-18-amd64",
            "5.15.0-1051-aws",
            "4.14.0-xenial",
        ] {
            assert!(!is_xen_only(bare), "{bare}");
        }
    }

    #[test]
    fn release_from_file_name_or_bzimage_header() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("vmlinuz-2.6.18-348.el5xen");
        fs::write(&named, b"not a bzImage").unwrap();
        assert_eq!(release(&named).as_deref(), Some("2.6.18-348.el5xen"));

        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        image[0x300..0x300 + 22].copy_from_slice(b"6.6.8-arch1-1 (linux@)");
        let unnamed = dir.path().join("vmlinuz-linux");
        fs::write(&unnamed, &image).unwrap();
        assert_eq!(release(&unnamed).as_deref(), Some("6.6.8-arch1-1"));
        assert_eq!(release(&dir.path().join("vmlinuz")), None);
    }
}

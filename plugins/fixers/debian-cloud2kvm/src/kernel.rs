//! A kernel with the target's drivers: the newest one in /boot that has them, or
//! one installed with the guest's own apt. Debian's cloud kernel has virtio but
//! no ahci and no e1000, so VirtualBox needs linux-image-amd64.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use rehost_sdk::fixer::{info, FixContext, Guest, Report};
use rehost_sdk::{fail, OsInfo, Result};

use crate::exec;
use crate::hardware::{Driver, Hardware};

const APT_GET: &str = "/usr/bin/apt-get";
const APT_ENV: &[(&str, &str)] = &[("DEBIAN_FRONTEND", "noninteractive")];
const APT_UPDATE_SECS: u32 = 300;
/// Download, unpack and the package's own initrd build, in a chroot at native speed.
const APT_INSTALL_SECS: u32 = 900;

/// The kernel the VM will boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
}

/// The newest kernel with the target's drivers, installing `package` (or the
/// distro's generic kernel) when none has them. `None` only under `rehost plan`,
/// where apt is recorded rather than run and so installs nothing.
pub fn ensure(
    guest: &dyn Guest,
    ctx: &FixContext,
    package: &str,
    hardware: &Hardware,
    report: &mut Report,
) -> Result<Option<Kernel>> {
    let xen_only: BTreeSet<&str> = ctx
        .kernels
        .iter()
        .filter(|k| k.xen_only)
        .map(|k| k.version.as_str())
        .collect();
    if let Some(version) = newest_with_drivers(guest, &xen_only, hardware)? {
        info(&format!(
            "booting {version}: it has {}",
            hardware.driver_names()
        ));
        return Ok(Some(Kernel { version }));
    }
    let package = match package {
        "" => default_package(&ctx.os)?,
        name => name.to_string(),
    };
    install(guest, &package)?;
    // ctx.kernels was listed before the install: look at /boot again.
    match newest_with_drivers(guest, &xen_only, hardware)? {
        Some(version) => {
            report.changed(format!(
                "installed {package} with apt-get: no kernel in /boot had the {} drivers \
                 {}; booting {version}",
                hardware.name,
                hardware.driver_names()
            ));
            Ok(Some(Kernel { version }))
        }
        None if ctx.dry_run => {
            report.changed(format!(
                "would boot {package}'s kernel: no kernel in /boot has the {} drivers {}, \
                 and the apt-get commands that install it only run outside a plan",
                hardware.name,
                hardware.driver_names()
            ));
            Ok(None)
        }
        None => Err(fail(format!(
            "apt-get installed {package}, but still no kernel in /boot has the {} drivers {}; \
             set kernel_package to a kernel package that has them",
            hardware.name,
            hardware.driver_names()
        ))),
    }
}

/// The distro's generic kernel for the guest's architecture.
fn default_package(os: &OsInfo) -> Result<String> {
    let package = match (os.id.as_str(), os.arch.as_str()) {
        ("ubuntu", "x86_64" | "i686" | "i586" | "i386") => "linux-image-generic",
        (_, "x86_64") => "linux-image-amd64",
        (_, "i686" | "i586" | "i386") => "linux-image-686",
        (id, arch) => {
            return Err(fail(format!(
                "no kernel in /boot has the target's drivers, and there is no default kernel \
                 package for {id} on {arch}: set kernel_package in this fixer's config"
            )))
        }
    };
    Ok(package.to_string())
}

fn install(guest: &dyn Guest, package: &str) -> Result<()> {
    exec::run(guest, &[APT_GET, "update"], APT_ENV, APT_UPDATE_SECS)?;
    let argv = [
        APT_GET,
        "install",
        "-y",
        "--no-install-recommends",
        // Keep configuration files this fixer (or the image's owner) changed
        // instead of stopping at dpkg's question.
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        package,
    ];
    exec::run(guest, &argv, APT_ENV, APT_INSTALL_SECS)?;
    Ok(())
}

/// The newest kernel in /boot that is not Xen-only and has every target driver.
fn newest_with_drivers(
    guest: &dyn Guest,
    xen_only: &BTreeSet<&str>,
    hardware: &Hardware,
) -> Result<Option<String>> {
    let mut best: Option<String> = None;
    for version in boot_kernels(guest)? {
        if xen_only.contains(version.as_str()) {
            continue;
        }
        let newer = best
            .as_deref()
            .is_none_or(|b| compare_versions(&version, b) == Ordering::Greater);
        if newer && has_drivers(guest, &version, &hardware.drivers)? {
            best = Some(version);
        }
    }
    Ok(best)
}

/// Versions of the kernels in /boot (`vmlinuz-VERSION`).
fn boot_kernels(guest: &dyn Guest) -> Result<Vec<String>> {
    Ok(guest
        .list_dir("/boot")?
        .into_iter()
        .filter_map(|name| name.strip_prefix("vmlinuz-").map(str::to_string))
        // dpkg leaves vmlinuz-VERSION.dpkg-bak and the like behind.
        .filter(|version| !version.contains(".dpkg-"))
        .collect())
}

/// Whether kernel `version` has every driver, as a module file or built in.
fn has_drivers(guest: &dyn Guest, version: &str, drivers: &[Driver]) -> Result<bool> {
    // /lib/modules is /usr/lib/modules on merged-/usr guests; the host follows the link.
    let base = format!("/lib/modules/{version}");
    if !guest.exists(&base)? {
        return Ok(false);
    }
    let builtin = guest
        .read_optional(&format!("{base}/modules.builtin"))?
        .unwrap_or_default();
    for driver in drivers {
        let file = format!("{}.ko", driver.name);
        let dir = format!("{base}/{}", driver.dir);
        // Modules may be compressed: ahci.ko.xz, ahci.ko.zst.
        let as_module = guest.exists(&dir)?
            && guest
                .list_dir(&dir)?
                .iter()
                .any(|n| *n == file || n.starts_with(&format!("{file}.")));
        let built_in_line = format!("{}/{file}", driver.dir);
        let built_in = builtin.lines().any(|l| l.trim() == built_in_line);
        if !as_module && !built_in {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Orders kernel versions by their runs of digits as numbers and the rest as
/// text, so 6.1.0-21-amd64 is newer than 6.1.0-9-amd64.
fn compare_versions(a: &str, b: &str) -> Ordering {
    chunks(a).cmp(&chunks(b))
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Chunk<'a> {
    Number(u64),
    Text(&'a str),
}

fn chunks(version: &str) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let mut rest = version;
    while let Some(first) = rest.chars().next() {
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        out.push(if digits {
            // More digits than a u64 holds is no version anyone ships; it sorts last.
            Chunk::Number(chunk.parse().unwrap_or(u64::MAX))
        } else {
            Chunk::Text(chunk)
        });
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare_versions("6.1.0-21-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("4.19.0-26-amd64", "6.1.0-1-amd64"),
            Ordering::Less
        );
        assert_eq!(
            compare_versions("5.15.0-1019-aws", "5.15.0-1019-aws"),
            Ordering::Equal
        );
    }

    fn os(id: &str, arch: &str) -> OsInfo {
        OsInfo {
            id: id.into(),
            version_id: String::new(),
            pretty_name: String::new(),
            id_like: vec![],
            arch: arch.into(),
        }
    }

    #[test]
    fn default_packages_by_distro_and_arch() {
        let pick = |id, arch| default_package(&os(id, arch));
        assert_eq!(pick("debian", "x86_64").unwrap(), "linux-image-amd64");
        assert_eq!(pick("debian", "i686").unwrap(), "linux-image-686");
        assert_eq!(pick("ubuntu", "x86_64").unwrap(), "linux-image-generic");
        let err = pick("debian", "aarch64").unwrap_err().to_string();
        assert!(err.contains("set kernel_package"), "{err}");
    }
}

//! virtualbox-ova: the seed's STEP 3 (`VBoxManage createvm … export`) without
//! VirtualBox. An OVA as VirtualBox exports it: a ustar archive of the OVF 1.0
//! descriptor, the disk as a streamOptimized VMDK, and a SHA1 manifest, in that
//! order. The host writes the VMDK natively; this plugin writes the descriptor and
//! the manifest.

pub mod guest_os;
pub mod ovf;

use rehost_sdk::packager::{
    config, warn, DiskFormat, Output, Packager, Result, TargetHardware, VmSettings, Written,
};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Add the `.mf` manifest of SHA1 digests (VirtualBox checks it on import).
    pub manifest: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { manifest: true }
    }
}

pub struct VirtualBoxOva;

impl Packager for VirtualBoxOva {
    fn package(settings: &VmSettings, output: &mut Output) -> Result<()> {
        let cfg: Config = config(settings)?;
        if settings.target != TargetHardware::Virtualbox {
            warn("the guest was prepared for KVM; an OVA runs it on VirtualBox's AHCI and e1000");
        }
        let stem = member_stem(&output.name());
        let (ovf_name, disk_name) = (format!("{stem}.ovf"), format!("{stem}-disk001.vmdk"));
        let (machine_uuid, disk_uuid) = (
            unique_uuid(settings, "machine"),
            unique_uuid(settings, "disk"),
        );
        let os = guest_os::guest_os(&settings.os);
        let descriptor = ovf::descriptor(&ovf::Appliance {
            name: &settings.name,
            memory_mb: settings.memory_mb,
            cpus: settings.cpus,
            os,
            os_description: &settings.os.pretty_name,
            disk_file: &disk_name,
            // The VMDK holds whole sectors (a partial last one reads as zeros).
            disk_capacity: output.disk_size().next_multiple_of(512),
            machine_uuid: &machine_uuid.to_string(),
            disk_uuid: &disk_uuid.to_string(),
        });

        output.begin_archive()?;
        let ovf = output.write_file(&ovf_name, descriptor.as_bytes())?;
        let disk = output.write_disk(DiskFormat::VmdkStreamOptimized, &disk_name)?;
        if cfg.manifest {
            output.write_file(&format!("{stem}.mf"), manifest(&[ovf, disk]).as_bytes())?;
        }
        Ok(())
    }
}

/// The base name of the members: the output's name without `.ova`, or "vm" when
/// that would not make a valid member name (ASCII, short).
fn member_stem(output_name: &str) -> String {
    let stem = output_name
        .strip_suffix(".ova")
        .or_else(|| output_name.strip_suffix(".OVA"))
        .unwrap_or(output_name);
    let usable = !stem.is_empty()
        && stem.len() <= 80
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if usable {
        stem.to_string()
    } else {
        "vm".to_string()
    }
}

/// A UUID no earlier export has: VirtualBox refuses to import a machine or a disk
/// whose UUID it already knows. Name-based (v5) over the VM name and the clock,
/// because the host's WASI offers no random source the SDK's uuid crate reaches.
fn unique_uuid(settings: &VmSettings, what: &str) -> uuid::Uuid {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("rehost/{what}/{}/{now}", settings.name);
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes())
}

/// One `SHA1 (name)= hex` line per file, as VirtualBox writes for OVF 1.0.
fn manifest(files: &[Written]) -> String {
    files
        .iter()
        .map(|f| format!("SHA1 ({})= {}\n", f.name, f.sha1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_after_the_output_when_that_is_safe() {
        assert_eq!(member_stem("web-01.ova"), "web-01");
        assert_eq!(member_stem("web"), "web");
        assert_eq!(member_stem("mon serveur é.ova"), "vm");
        assert_eq!(member_stem(".ova"), "vm");
    }

    #[test]
    fn manifest_lines_follow_write_order() {
        let file = |name: &str, sha1: &str| Written {
            name: name.into(),
            bytes: 1,
            sha1: sha1.into(),
            sha256: String::new(),
        };
        assert_eq!(
            manifest(&[file("a.ovf", "aa"), file("a-disk001.vmdk", "bb")]),
            "SHA1 (a.ovf)= aa\nSHA1 (a-disk001.vmdk)= bb\n"
        );
    }
}

rehost_sdk::export_packager!(VirtualBoxOva);

//! Whether a device spec (fstab's first field, a kernel `root=` value) names the
//! new root filesystem, and whether it names a Xen disk.

use super::CheckInput;

/// True when `spec` names the new filesystem: `UUID=`, `LABEL=`, the device
/// name, or its /dev/disk/by-uuid or by-label link. Quotes around the value
/// (`UUID="..."`) are allowed, as libmount allows them.
pub(super) fn names_new_root(input: &CheckInput, spec: &str) -> bool {
    let spec = spec.trim();
    if let Some(uuid) = spec
        .strip_prefix("UUID=")
        .or_else(|| spec.strip_prefix("/dev/disk/by-uuid/"))
    {
        return unquote(uuid).eq_ignore_ascii_case(&input.fs_uuid);
    }
    if let Some(label) = spec
        .strip_prefix("LABEL=")
        .or_else(|| spec.strip_prefix("/dev/disk/by-label/"))
    {
        return input.fs_label.as_deref() == Some(unquote(label));
    }
    spec == input.device
}

/// True for Xen virtual disk names (`/dev/xvda1`, `xvde`), which do not exist
/// on VirtualBox or KVM.
pub(super) fn is_xen_device(spec: &str) -> bool {
    let name = spec.trim().strip_prefix("/dev/").unwrap_or(spec.trim());
    name.starts_with("xvd")
}

/// The ways the new root can be named, for messages and fixes.
pub(super) fn describe_new_root(input: &CheckInput) -> String {
    match &input.fs_label {
        Some(label) => format!("UUID={}, LABEL={label} or {}", input.fs_uuid, input.device),
        None => format!("UUID={} or {}", input.fs_uuid, input.device),
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    fn input() -> CheckInput {
        CheckInput {
            root: "/nonexistent".into(),
            fs_uuid: "0b5a4c3e-1111-2222-3333-444455556666".into(),
            fs_label: Some("root".into()),
            device: "/dev/sda1".into(),
            target: Target::Virtualbox,
            boot_entries: Vec::new(),
        }
    }

    #[test]
    fn every_name_of_the_new_root_matches() {
        let input = input();
        for spec in [
            "UUID=0B5A4C3E-1111-2222-3333-444455556666",
            "UUID=\"0b5a4c3e-1111-2222-3333-444455556666\"",
            "/dev/disk/by-uuid/0b5a4c3e-1111-2222-3333-444455556666",
            "LABEL=root",
            "/dev/disk/by-label/root",
            "/dev/sda1",
        ] {
            assert!(names_new_root(&input, spec), "{spec}");
        }
        for spec in [
            "UUID=ffff",
            "LABEL=cloudimg-rootfs",
            "/dev/xvda1",
            "/dev/vda1",
        ] {
            assert!(!names_new_root(&input, spec), "{spec}");
        }
        assert!(is_xen_device("/dev/xvda1") && is_xen_device("xvde"));
        assert!(!is_xen_device("/dev/sda1"));
    }
}

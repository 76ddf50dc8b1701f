//! The virtual hardware a converted disk is for, shared by every stage.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// SATA AHCI disk and an Intel e1000 NIC (the seed's VirtualBox VM).
    Virtualbox,
    /// virtio-blk disk and virtio-net NIC.
    Kvm,
}

impl Target {
    /// The name people know the hypervisor by.
    pub fn name(self) -> &'static str {
        match self {
            Target::Virtualbox => "VirtualBox",
            Target::Kvm => "KVM",
        }
    }

    /// The root partition's device name inside the VM.
    pub fn root_device(self) -> &'static str {
        match self {
            Target::Virtualbox => "/dev/sda1",
            Target::Kvm => "/dev/vda1",
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtualbox" => Ok(Target::Virtualbox),
            "kvm" => Ok(Target::Kvm),
            other => Err(format!(
                "unknown target {other:?} (expected virtualbox or kvm)"
            )),
        }
    }
}

impl From<Target> for crate::plugin::fixer_host::TargetHardware {
    fn from(t: Target) -> Self {
        match t {
            Target::Virtualbox => Self::Virtualbox,
            Target::Kvm => Self::Kvm,
        }
    }
}

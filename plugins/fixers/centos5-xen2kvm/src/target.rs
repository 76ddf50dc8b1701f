//! What the target hardware needs from a CentOS 5 guest.

use rehost_sdk::TargetHardware;

/// The target's drivers, as the seed's modprobe.conf and mkinitrd name them.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    /// Disk controller drivers, for the `scsi_hostadapter`, `scsi_hostadapter1`... aliases.
    pub disk_modules: &'static [&'static str],
    /// The NIC driver, for the `eth0` alias.
    pub nic_module: &'static str,
    /// Modules the disk needs besides its controller: a libata disk is a SCSI
    /// disk, and mkinitrd in a chroot cannot tell that from the root device.
    pub disk_support: &'static [&'static str],
    /// What the target calls the first disk (`/dev/xvda3` becomes `/dev/sda3`).
    pub disk_prefix: &'static str,
}

/// Modules every initrd gets, as in the seed (the Eucalyptus → OpenStack case).
pub const VIRTIO_MODULES: [&str; 6] = [
    "virtio_pci",
    "virtio_ring",
    "virtio_blk",
    "virtio_net",
    "virtio_balloon",
    "virtio",
];

impl Target {
    pub fn of(target: TargetHardware) -> Self {
        match target {
            // The lines CentOS's installer wrote on VirtualBox (the seed's KVM sample).
            TargetHardware::Virtualbox => Target {
                name: "VirtualBox",
                disk_modules: &["ata_piix", "ahci"],
                nic_module: "e1000",
                disk_support: &["sd_mod"],
                disk_prefix: "/dev/sd",
            },
            TargetHardware::Kvm => Target {
                name: "KVM",
                disk_modules: &["virtio_blk"],
                nic_module: "virtio_net",
                disk_support: &[],
                disk_prefix: "/dev/vd",
            },
        }
    }

    /// `--with` modules for mkinitrd: virtio always, plus the SATA drivers and the
    /// SCSI disk driver for VirtualBox.
    pub fn initrd_modules(&self) -> Vec<&'static str> {
        let mut modules = VIRTIO_MODULES.to_vec();
        for module in self.disk_modules.iter().chain(self.disk_support) {
            if !modules.contains(module) {
                modules.push(module);
            }
        }
        modules
    }
}

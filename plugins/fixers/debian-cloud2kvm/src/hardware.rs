//! What the target hardware needs from the guest's kernel and initrd.

use rehost_sdk::TargetHardware;

/// A kernel module and where its .ko lives below /lib/modules/VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driver {
    pub name: &'static str,
    pub dir: &'static str,
}

const AHCI: Driver = Driver {
    name: "ahci",
    dir: "kernel/drivers/ata",
};
const E1000: Driver = Driver {
    name: "e1000",
    dir: "kernel/drivers/net/ethernet/intel/e1000",
};
const VIRTIO_BLK: Driver = Driver {
    name: "virtio_blk",
    dir: "kernel/drivers/block",
};
const VIRTIO_NET: Driver = Driver {
    name: "virtio_net",
    dir: "kernel/drivers/net",
};

/// The target's disk and NIC drivers and the modules its initrd must carry.
#[derive(Debug, Clone, Copy)]
pub struct Hardware {
    pub name: &'static str,
    /// A kernel without these cannot boot (disk) or reach the network (NIC).
    pub drivers: [Driver; 2],
    /// Disk controller, disk and transport drivers the initrd loads before mounting /.
    pub initrd_modules: &'static [&'static str],
}

impl Hardware {
    pub fn of(target: TargetHardware) -> Self {
        match target {
            TargetHardware::Virtualbox => Hardware {
                name: "VirtualBox",
                drivers: [AHCI, E1000],
                // sd_mod: without it AHCI finds the disk but no /dev/sda appears;
                // ata_piix for a VM moved to an IDE controller.
                initrd_modules: &["ahci", "ata_piix", "sd_mod"],
            },
            TargetHardware::Kvm => Hardware {
                name: "KVM",
                drivers: [VIRTIO_BLK, VIRTIO_NET],
                // virtio_pci: without the transport virtio_blk never sees the disk.
                initrd_modules: &["virtio_pci", "virtio_blk"],
            },
        }
    }

    /// "ahci and e1000", for messages.
    pub fn driver_names(&self) -> String {
        format!("{} and {}", self.drivers[0].name, self.drivers[1].name)
    }
}

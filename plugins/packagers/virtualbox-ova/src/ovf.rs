//! The OVF 1.0 descriptor, laid out as VirtualBox's own export writes it: one
//! streamOptimized disk, a NAT network, and a VirtualSystem with its OS type,
//! hardware items (rasd children in alphabetical order, as VMware requires) and a
//! `vbox:Machine` section carrying what OVF cannot say (ACPI, IOAPIC).

use std::fmt::Write;

use crate::guest_os::GuestOs;

/// Everything the descriptor says.
pub struct Appliance<'a> {
    pub name: &'a str,
    pub memory_mb: u32,
    pub cpus: u32,
    pub os: GuestOs,
    /// The guest's human-readable name, for the OS description.
    pub os_description: &'a str,
    /// The disk member's file name.
    pub disk_file: &'a str,
    /// Capacity in bytes.
    pub disk_capacity: u64,
    /// VirtualBox UUIDs of the machine and of the disk (they must be unique per
    /// import, and the machine's attachment must name the disk's).
    pub machine_uuid: &'a str,
    pub disk_uuid: &'a str,
}

const VMDK_STREAM: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// The descriptor's XML text.
pub fn descriptor(a: &Appliance) -> String {
    let name = escape(a.name);
    let mut x = String::new();
    x.push_str(concat!(
        "<?xml version=\"1.0\"?>\n",
        "<Envelope ovf:version=\"1.0\" xml:lang=\"en-US\"",
        " xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"",
        " xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"",
        " xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\"",
        " xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\"",
        " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
        " xmlns:vbox=\"http://www.virtualbox.org/ovf/machine\">\n",
    ));
    let _ = write!(
        x,
        r#"  <References>
    <File ovf:id="file1" ovf:href="{disk_file}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{VMDK_STREAM}" vbox:uuid="{disk_uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT">
      <Description>Logical network used by this appliance.</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="{cim}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{os_description}</Description>
      <vbox:OSType ovf:required="false">{vbox_os}</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
"#,
        disk_file = escape(a.disk_file),
        capacity = a.disk_capacity,
        disk_uuid = a.disk_uuid,
        cim = a.os.cim_id,
        os_description = escape(a.os_description),
        vbox_os = a.os.vbox,
    );
    let cpus = format!(
        "{} virtual CPU{}",
        a.cpus,
        if a.cpus == 1 { "" } else { "s" }
    );
    let memory = format!("{} MB of memory", a.memory_mb);
    let (cpu_count, memory_mb) = (a.cpus.to_string(), a.memory_mb.to_string());
    let nic = "Ethernet adapter on 'NAT'";
    // rasd children, alphabetical; InstanceIDs count up from 1, the disk's Parent
    // is the SATA controller (3).
    let items: [&[(&str, &str)]; 5] = [
        &[
            ("Caption", &cpus),
            ("Description", "Number of virtual CPUs"),
            ("ElementName", &cpus),
            ("InstanceID", "1"),
            ("ResourceType", "3"),
            ("VirtualQuantity", &cpu_count),
        ],
        &[
            ("AllocationUnits", "MegaBytes"),
            ("Caption", &memory),
            ("Description", "Memory Size"),
            ("ElementName", &memory),
            ("InstanceID", "2"),
            ("ResourceType", "4"),
            ("VirtualQuantity", &memory_mb),
        ],
        &[
            ("Address", "0"),
            ("Caption", "sataController0"),
            ("Description", "SATA Controller"),
            ("ElementName", "sataController0"),
            ("InstanceID", "3"),
            ("ResourceSubType", "AHCI"),
            ("ResourceType", "20"),
        ],
        &[
            ("AddressOnParent", "0"),
            ("Caption", "disk1"),
            ("Description", "Disk Image"),
            ("ElementName", "disk1"),
            ("HostResource", "/disk/vmdisk1"),
            ("InstanceID", "4"),
            ("Parent", "3"),
            ("ResourceType", "17"),
        ],
        &[
            ("AutomaticAllocation", "true"),
            ("Caption", nic),
            ("Connection", "NAT"),
            ("ElementName", nic),
            ("InstanceID", "5"),
            ("ResourceSubType", "E1000"),
            ("ResourceType", "10"),
        ],
    ];
    for item in items {
        x.push_str("      <Item>\n");
        for (key, value) in item {
            let _ = writeln!(x, "        <rasd:{key}>{}</rasd:{key}>", escape(value));
        }
        x.push_str("      </Item>\n");
    }
    // VirtualBox settings format 1.12 (VirtualBox 4.2) is read by every later release.
    let _ = write!(
        x,
        r#"    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.12-linux" uuid="{{{machine_uuid}}}" name="{name}" OSType="{vbox_os}" snapshotFolder="Snapshots">
      <ovf:Info>Complete VirtualBox machine configuration in VirtualBox format</ovf:Info>
      <Hardware>
        <CPU count="{cpus}">
          <PAE enabled="{pae}"/>
        </CPU>
        <Memory RAMSize="{memory_mb}"/>
        <BIOS>
          <ACPI enabled="true"/>
          <IOAPIC enabled="true"/>
        </BIOS>
        <Network>
          <Adapter slot="0" enabled="true" type="82540EM">
            <NAT/>
          </Adapter>
        </Network>
        <StorageControllers>
          <StorageController name="SATA Controller" type="AHCI" PortCount="1" useHostIOCache="false" Bootable="true">
            <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
              <Image uuid="{{{disk_uuid}}}"/>
            </AttachedDevice>
          </StorageController>
        </StorageControllers>
      </Hardware>
    </vbox:Machine>
  </VirtualSystem>
</Envelope>
"#,
        machine_uuid = a.machine_uuid,
        disk_uuid = a.disk_uuid,
        vbox_os = a.os.vbox,
        cpus = a.cpus,
        pae = a.os.is_64bit,
        memory_mb = a.memory_mb,
    );
    x
}

/// Text for an XML attribute value or element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_os::GuestOs;

    fn appliance<'a>(name: &'a str) -> Appliance<'a> {
        Appliance {
            name,
            memory_mb: 512,
            cpus: 1,
            os: GuestOs {
                cim_id: 96,
                vbox: "Debian_64",
                is_64bit: true,
            },
            os_description: "Debian GNU/Linux 12 (bookworm)",
            disk_file: "vm-disk001.vmdk",
            disk_capacity: 3 << 30,
            machine_uuid: "11111111-1111-4111-8111-111111111111",
            disk_uuid: "22222222-2222-4222-8222-222222222222",
        }
    }

    #[test]
    fn names_are_escaped_everywhere() {
        let x = descriptor(&appliance(r#"a<b>&"c'"#));
        assert!(!x.contains(r#"a<b>"#));
        assert_eq!(x.matches("a&lt;b&gt;&amp;&quot;c&apos;").count(), 3);
    }

    #[test]
    fn hardware_is_sata_ahci_e1000_on_nat_with_acpi_and_ioapic() {
        let x = descriptor(&appliance("vm"));
        for needle in [
            "<rasd:ResourceSubType>AHCI</rasd:ResourceSubType>",
            "<rasd:ResourceType>20</rasd:ResourceType>",
            "<rasd:ResourceSubType>E1000</rasd:ResourceSubType>",
            "<rasd:Connection>NAT</rasd:Connection>",
            "<rasd:VirtualQuantity>512</rasd:VirtualQuantity>",
            "<ACPI enabled=\"true\"/>",
            "<IOAPIC enabled=\"true\"/>",
            "ovf:capacity=\"3221225472\"",
            "<OperatingSystemSection ovf:id=\"96\">",
            "<Image uuid=\"{22222222-2222-4222-8222-222222222222}\"/>",
            "vbox:uuid=\"22222222-2222-4222-8222-222222222222\"",
        ] {
            assert!(x.contains(needle), "missing {needle}");
        }
    }
}

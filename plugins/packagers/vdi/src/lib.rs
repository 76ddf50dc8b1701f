//! vdi: the disk as one dynamic VirtualBox VDI image (the seed's
//! `VBoxManage convertfromraw`), written natively by the host.

use rehost_sdk::packager::{config, DiskFormat, Output, Packager, Result, VmSettings};

use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

/// No settings; an unknown key is an error rather than silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Vdi;

impl Packager for Vdi {
    fn package(settings: &VmSettings, output: &mut Output) -> Result<()> {
        let Config {} = config(settings)?;
        output.write_output_disk(DiskFormat::Vdi)?;
        Ok(())
    }
}

rehost_sdk::export_packager!(Vdi);

//! raw: the disk as a sparse raw image, byte for byte (holes stay holes).

use rehost_sdk::packager::{config, DiskFormat, Output, Packager, Result, VmSettings};

use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

/// No settings; an unknown key is an error rather than silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub struct Raw;

impl Packager for Raw {
    fn package(settings: &VmSettings, output: &mut Output) -> Result<()> {
        let Config {} = config(settings)?;
        output.write_output_disk(DiskFormat::Raw)?;
        Ok(())
    }
}

rehost_sdk::export_packager!(Raw);

//! qcow2: the disk as one qcow2 v3 image, the usual format for KVM. The host
//! writes it natively (64 KiB clusters, zero clusters left out).

use rehost_sdk::packager::{config, DiskFormat, Output, Packager, Result, VmSettings};

use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Deflate every cluster that shrinks: smaller, slower to write and to read.
    pub compressed: bool,
}

pub struct Qcow2;

impl Packager for Qcow2 {
    fn package(settings: &VmSettings, output: &mut Output) -> Result<()> {
        let cfg: Config = config(settings)?;
        let format = if cfg.compressed {
            DiskFormat::Qcow2Compressed
        } else {
            DiskFormat::Qcow2
        };
        output.write_output_disk(format)?;
        Ok(())
    }
}

rehost_sdk::export_packager!(Qcow2);

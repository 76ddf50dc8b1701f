//! `rehost check DISK [--json]`: the seed's troubleshooting list on a finished disk.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::check::{self, CheckInput};
use crate::disk::ext::FsLocation;
use crate::guest::mount::{self, MountOptions};
use crate::target::Target;

#[derive(clap::Args)]
pub struct Args {
    /// A raw disk built by rehost (or any MBR disk / bare filesystem image).
    disk: PathBuf,
    #[arg(long, value_enum, default_value = "virtualbox")]
    target: Target,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inspection = crate::guest::inspect::inspect_image(&args.disk)?;
    let layout = &inspection.layout;
    let location = FsLocation::partition(&args.disk, layout.offset, layout.length);
    // e2fsck first, read-only: the disk is not changed by checking it.
    let fsck = check::fsck_finding(&location);
    super::enter_namespace()?;
    let fstype = inspection.filesystem.fstype;
    let mounted = mount::mount_image(
        &args.disk,
        &MountOptions {
            fstype,
            offset: layout.offset,
            length: Some(layout.length),
            read_only: true,
        },
    )
    .with_context(|| format!("mounting {} read-only", args.disk.display()))?;
    let mut report = check::run(&CheckInput {
        root: mounted.path().to_path_buf(),
        fs_uuid: inspection.filesystem.uuid.clone().unwrap_or_default(),
        fs_label: inspection.filesystem.label.clone(),
        device: args.target.root_device().to_string(),
        target: args.target,
        boot_entries: vec![],
    })?;
    mounted.unmount()?;
    report.findings.push(fsck);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

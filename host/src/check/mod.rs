//! The check stage: the seed's troubleshooting section, automated.
//!
//! `run` inspects a guest root directory (the finished disk's filesystem, mounted
//! by the caller, or the guest root during `rehost convert`) and reports, for the
//! target hardware, everything that would keep it from booting or logging in:
//! an fstab root that is not the new filesystem, missing kernels or initrds,
//! Xen-only kernels, an initrd without the disk driver, Xen consoles and driver
//! aliases, and cloud metadata calls in rc.local. Every guest path is resolved
//! inside the root (see [`resolve`]), never on the host.

mod boot;
mod console;
mod cpio;
mod drivers;
mod findings;
mod fstab;
pub mod initrd;
mod kernel;
mod modprobe;
mod rclocal;
pub mod resolve;
mod root_spec;

use std::path::PathBuf;

use serde::Serialize;

pub use boot::discover_boot_entries;
pub use findings::{Finding, Report, Severity};
use resolve::GuestRoot;

pub use crate::target::Target;

/// One kernel the bootloader will boot; paths are guest paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootEntry {
    pub title: String,
    pub kernel: String,
    pub initrd: Option<String>,
    pub cmdline: String,
}

/// What to check and against what.
#[derive(Clone, Debug)]
pub struct CheckInput {
    /// The guest root directory on the host.
    pub root: PathBuf,
    /// The new root filesystem's UUID, label and device name in the VM (`/dev/sda1`).
    pub fs_uuid: String,
    pub fs_label: Option<String>,
    pub device: String,
    pub target: Target,
    /// The entries the bootloader boots; when empty they are read from the guest's
    /// GRUB configuration (see [`discover_boot_entries`]).
    pub boot_entries: Vec<BootEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("guest root {path} is not a readable directory: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What every check reads: the guest, the caller's input, the boot entries.
struct Context<'a> {
    guest: GuestRoot,
    input: &'a CheckInput,
    entries: Vec<BootEntry>,
}

/// Runs every check on the guest root and returns the findings in check order.
/// Problems in the guest are findings; only an unusable root is an error.
pub fn run(input: &CheckInput) -> Result<Report, CheckError> {
    std::fs::read_dir(&input.root).map_err(|source| CheckError::Root {
        path: input.root.clone(),
        source,
    })?;
    let guest = GuestRoot::new(&input.root);
    let mut report = Report::default();
    let entries = if input.boot_entries.is_empty() {
        boot::discover_or_report(&guest, &mut report)
    } else {
        input.boot_entries.clone()
    };
    let cx = Context {
        guest,
        input,
        entries,
    };
    let root_fs_type = fstab::check(&cx, &mut report);
    boot::check(&cx, &mut report);
    drivers::check(&cx, root_fs_type.as_deref(), &mut report);
    console::check(&cx, &mut report);
    rclocal::check(&cx, &mut report);
    modprobe::check(&cx, &mut report);
    Ok(report)
}

/// e2fsck -fn on a filesystem, reported as a finding like every other check.
pub fn fsck_finding(location: &crate::disk::ext::FsLocation) -> Finding {
    use crate::disk::ext::{fsck, FsckMode, FsckOutcome};
    match fsck(location, FsckMode::CheckOnly) {
        Ok(r) => {
            let code = match r.outcome {
                FsckOutcome::Clean => 0,
                FsckOutcome::Corrected => 1,
                FsckOutcome::CorrectedRebootAdvised => 2,
            };
            Finding::from_fsck(code, &r.output)
        }
        Err(e) => Finding::from_fsck(4, &e.to_string()),
    }
}

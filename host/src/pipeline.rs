//! The conversion, stage by stage: inspect → layout → fix → bootloader → check →
//! package. Each stage is a function below, called in order by [`convert`]; the
//! work lives in the stage modules (`guest`, `disk`, `plugin`, `check`).
//!
//! Safety: the input is only ever opened read-only; everything is built in a
//! temporary directory beside the output and renamed into place at the very end, so
//! a failure or Ctrl-C leaves no partial output; mounts and loop devices are guards
//! released on every path out (and the binary runs in a private mount namespace, so
//! even SIGKILL releases them).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::check;
use crate::disk::copy::{self, Control, RangeCopy};
use crate::disk::ext::{self, FsLocation, FsckMode};
use crate::disk::{bootloader, mbr};
use crate::guest::inspect::{self, Inspection};
use crate::guest::mount::{self, GuestMount, MountOptions};
use crate::guest::overlay::Overlay;
use crate::guest::root::{GuestPath, GuestRoot, Kind as FileKind, WriteOptions};
use crate::plugin::fixer_host::{
    call_fixer, BootEntry, ChrootCommands, DryRunCommands, FixContext, KernelInfo, NewRoot, OsInfo,
};
use crate::plugin::journal;
use crate::plugin::manifest::Capabilities;
use crate::plugin::packager_host::{self, VmSettings};
use crate::plugin::source_host::{self, FetchOptions};
use crate::plugin::{catalog, CommandRunner, FixerCall, Grants, Kind, LoadedPlugin, Runtime};
use crate::target::Target;

/// The generic fixer every conversion runs before the distro's own.
const GENERIC_FIXERS: &[&str] = &["xen-console"];
/// Headroom added to the source filesystem when no size is given (room for a
/// kernel and initramfs installed by a fixer).
const DEFAULT_HEADROOM: u64 = 1 << 30;

/// What to convert, how, and into what.
#[derive(Debug, Clone)]
pub struct Request {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The packager that writes the output, and its settings.
    pub output_spec: OutputSpec,
    /// Where the instance comes from when INPUT is not a local image.
    pub source: Option<SourceSpec>,
    pub target: Target,
    /// Whole-disk size; default: the source filesystem plus 1 GiB.
    pub size: Option<u64>,
    /// Fixers in order; empty picks the generic ones plus the distro's.
    pub fixers: Vec<String>,
    /// `[fixer.NAME]` tables as TOML text.
    pub fixer_config: BTreeMap<String, String>,
    /// `[grants.NAME]` tables: what the pipeline allows each plugin, intersected
    /// with what it asks for and what the user granted at install.
    pub allowed: BTreeMap<String, Capabilities>,
    /// Convert even when the final check reports errors.
    pub allow_check_errors: bool,
}

/// The output: which packager writes it, and the VM it describes.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Stock packager name or FILE.wasm (virtualbox-ova, qcow2, vdi, raw).
    pub packager: String,
    /// The packager's table as TOML text.
    pub config: String,
    pub memory_mb: u32,
    pub cpus: u32,
}

/// The source step: a source plugin fills the work image that becomes INPUT.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub plugin: String,
    pub options: FetchOptions,
}

/// What a conversion did.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub output: PathBuf,
    pub packager: String,
    pub disk_bytes: u64,
    pub output_bytes: u64,
    pub inspection: Inspection,
    pub fixers: Vec<FixerRun>,
    pub check: check::Report,
}

#[derive(Debug, Serialize)]
pub struct FixerRun {
    pub name: String,
    pub version: String,
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    pub commands: Vec<Vec<String>>,
    /// Unified diffs of every file it changed and every command, as `rehost plan` shows.
    pub plan: String,
}

/// What `rehost plan` found: each fixer's changes, made on a throwaway view.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub inspection: Inspection,
    pub fixers: Vec<FixerRun>,
}

/// Runs the fixers against a copy-on-write view of the input (overlayfs over a
/// read-only mount) with commands recorded instead of run; nothing is written to
/// the input or anywhere else that outlives the call.
pub fn plan(req: &Request, runtime: &Runtime, cancel: &Arc<AtomicBool>) -> Result<Plan> {
    let inspection = inspect(&req.input)?;
    let fixers = choose_fixers(req, runtime, &inspection)?;
    let lower = mount::mount_image(
        &req.input,
        &MountOptions {
            fstype: inspection.filesystem.fstype,
            offset: inspection.layout.offset,
            length: Some(inspection.layout.length),
            read_only: true,
        },
    )
    .with_context(|| format!("mounting {} read-only", req.input.display()))?;
    let overlay = Overlay::mount(lower.path())?;
    let root = Arc::new(GuestRoot::open(overlay.path())?);
    let new_root = new_root(req, &inspection);
    let (runs, _) = fix(
        req,
        runtime,
        &inspection,
        &fixers,
        &root,
        &new_root,
        Mode::DryRun,
        cancel,
    )?;
    drop(root);
    drop(overlay);
    lower.unmount()?;
    Ok(Plan {
        inspection,
        fixers: runs,
    })
}

/// Whether fixers change the real guest or a throwaway view.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Real,
    DryRun,
}

fn new_root(req: &Request, inspection: &Inspection) -> NewRoot {
    NewRoot {
        uuid: inspection.filesystem.uuid.clone().unwrap_or_default(),
        label: inspection
            .filesystem
            .label
            .clone()
            .filter(|l| !l.is_empty()),
        fs_type: inspection.filesystem.fstype.as_str().to_string(),
        device: req.target.root_device().to_string(),
    }
}

/// Runs the whole conversion.
pub fn convert(req: &Request, runtime: &Runtime, cancel: &Arc<AtomicBool>) -> Result<Outcome> {
    let work = WorkDir::beside(&req.output)?;
    // Every plugin is loaded (and so validated) before anything heavy starts.
    let packager = catalog::load_kind(runtime, &req.output_spec.packager, Kind::Packager)?;
    let fetched;
    let req = match &req.source {
        Some(spec) => {
            fetched = Request {
                input: fetch_source(spec, runtime, &work, cancel)?,
                ..req.clone()
            };
            &fetched
        }
        None => req,
    };
    let inspection = inspect(&req.input)?;
    let fixers = choose_fixers(req, runtime, &inspection)?;

    let layout = layout(req, &inspection, &work, cancel)?;
    check_cancel(cancel)?;
    let mounted = mount::mount_image(
        &layout.disk,
        &MountOptions {
            fstype: inspection.filesystem.fstype,
            offset: mbr::PARTITION_OFFSET,
            length: Some(layout.fs_bytes),
            read_only: false,
        },
    )
    .context("mounting the new root filesystem")?;
    let root = Arc::new(GuestRoot::open(mounted.path()).context("opening the mounted guest root")?);

    let new_root = new_root(req, &inspection);
    let (runs, entries) = fix(
        req,
        runtime,
        &inspection,
        &fixers,
        &root,
        &new_root,
        Mode::Real,
        cancel,
    )?;
    check_cancel(cancel)?;
    let grub_entries = write_grub_cfg(&root, &inspection, &entries, &new_root)?;
    let mut report = check_guest(req, &mounted, &new_root, &grub_entries)?;
    drop(root);
    mounted
        .unmount()
        .context("unmounting the new root filesystem")?;

    report
        .findings
        .push(check::fsck_finding(&FsLocation::partition(
            &layout.disk,
            mbr::PARTITION_OFFSET,
            layout.fs_bytes,
        )));
    if !report.is_ok() && !req.allow_check_errors {
        bail!(
            "the converted disk failed its checks, so no output was written:\n{}",
            report
        );
    }
    install_bootloader(&layout.disk, &new_root)?;
    check_cancel(cancel)?;
    let output_bytes = package(req, runtime, &packager, &layout.disk, &inspection, cancel)?;
    Ok(Outcome {
        output: req.output.clone(),
        packager: req.output_spec.packager.clone(),
        disk_bytes: mbr::disk_bytes(layout.fs_bytes),
        output_bytes,
        inspection,
        fixers: runs,
        check: report,
    })
}

/// Stage 1: what the input is, without mounting or writing it.
pub fn inspect(input: &Path) -> Result<Inspection> {
    let inspection =
        inspect::inspect_image(input).with_context(|| format!("inspecting {}", input.display()))?;
    if inspection.kernels.is_empty() {
        bail!(
            "{}: no kernel in /boot. The instance was booted by its hypervisor with an external \
             kernel, so there is nothing for a bootloader to boot; install a kernel package in the \
             instance (e.g. linux-image-amd64 or kernel) and copy it again",
            input.display()
        );
    }
    Ok(inspection)
}

/// The fixers to run, all loaded (and so validated) before anything is written.
fn choose_fixers(
    req: &Request,
    runtime: &Runtime,
    inspection: &Inspection,
) -> Result<Vec<LoadedPlugin>> {
    if !req.fixers.is_empty() {
        return req
            .fixers
            .iter()
            .map(|name| catalog::load_kind(runtime, name, Kind::Fixer).map_err(Into::into))
            .collect();
    }
    let os = &inspection.os;
    let (id, version) = (
        os.id.as_deref().unwrap_or(""),
        os.version.as_deref().unwrap_or(""),
    );
    let mut distro = Vec::new();
    let mut known = Vec::new();
    for entry in catalog::stock_entries()? {
        let m = &entry.manifest;
        if m.kind != Kind::Fixer || m.applies_to.is_empty() {
            continue;
        }
        let applies: Vec<String> = m
            .applies_to
            .iter()
            .map(|a| match &a.versions {
                Some(v) => format!("{} {v}", a.id),
                None => a.id.clone(),
            })
            .collect();
        known.push(format!("{} ({})", m.name, applies.join(", ")));
        if m.applies_to(id, &[], version) {
            distro.push(m.name.clone());
        }
    }
    if distro.is_empty() {
        bail!(
            "{}: no stock fixer applies to this guest ({} {}); known distro fixers: {}. \
             Name fixers with --fixer to convert it anyway",
            req.input.display(),
            if id.is_empty() { "unknown OS" } else { id },
            version,
            known.join("; ")
        );
    }
    GENERIC_FIXERS
        .iter()
        .map(|s| s.to_string())
        .chain(distro)
        .map(|name| catalog::load_kind(runtime, &name, Kind::Fixer).map_err(Into::into))
        .collect()
}

/// Where the new disk is built: a temporary directory beside the output, so the
/// final rename is atomic and nothing is left behind on failure.
struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    fn beside(output: &Path) -> Result<Self> {
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = tempfile::Builder::new()
            .prefix(".rehost-")
            .tempdir_in(&parent)
            .with_context(|| format!("output directory {} is not writable", parent.display()))?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Layout {
    disk: PathBuf,
    fs_bytes: u64,
}

/// Stage 3: a new sparse disk with an MBR and the instance's filesystem, grown, at
/// 1 MiB. resize2fs runs on a bare copy (it corrupts images given `?offset=`).
fn layout(
    req: &Request,
    inspection: &Inspection,
    work: &WorkDir,
    cancel: &Arc<AtomicBool>,
) -> Result<Layout> {
    let src_loc = FsLocation::partition(
        &req.input,
        inspection.layout.offset,
        inspection.layout.length,
    );
    let sb = ext::read_superblock(&src_loc)
        .with_context(|| format!("reading {}", req.input.display()))?;
    let fs_bytes = sb.fs_bytes();
    if inspection.layout.offset + fs_bytes > std::fs::metadata(&req.input)?.len() {
        bail!(
            "{}: truncated image: the filesystem needs {} bytes but the file ends earlier; copy the instance again",
            req.input.display(),
            fs_bytes
        );
    }
    let new_fs = match req.size {
        Some(size) => {
            let room = size.saturating_sub(mbr::PARTITION_OFFSET) / (1 << 20) * (1 << 20);
            if room < fs_bytes {
                bail!(
                    "target too small: --size {} leaves {} MiB for a filesystem of {} MiB; \
                     give at least {} MiB (filesystems are never shrunk)",
                    size,
                    room >> 20,
                    fs_bytes.div_ceil(1 << 20),
                    (fs_bytes + mbr::PARTITION_OFFSET).div_ceil(1 << 20)
                );
            }
            room
        }
        None => (fs_bytes + DEFAULT_HEADROOM).div_ceil(1 << 20) * (1 << 20),
    };

    let control = Control {
        progress: None,
        cancel: Some(cancel),
    };
    let bare = work.path("root.fs");
    {
        let src =
            File::open(&req.input).with_context(|| format!("opening {}", req.input.display()))?;
        let dst = File::create(&bare)?;
        dst.set_len(fs_bytes)?;
        RangeCopy {
            src: &src,
            src_path: &req.input,
            src_offset: inspection.layout.offset,
            length: fs_bytes,
            dst: &dst,
            dst_path: &bare,
            dst_offset: 0,
        }
        .run(&control)?;
    }
    ext::fsck(&FsLocation::bare(&bare), FsckMode::Repair)
        .context("checking the copied filesystem")?;
    let fs_bytes = if new_fs > fs_bytes {
        ext::grow(&bare, new_fs)?
    } else {
        fs_bytes
    };
    ext::fsck(&FsLocation::bare(&bare), FsckMode::Repair)
        .context("checking the grown filesystem")?;

    let disk = work.path("disk.raw");
    let dst = copy::shift_into_disk(
        &bare,
        &disk,
        mbr::PARTITION_OFFSET,
        mbr::disk_bytes(fs_bytes),
        &control,
    )?;
    let table = mbr::Mbr::single_linux_partition(mbr::random_disk_signature(), fs_bytes)?;
    std::os::unix::fs::FileExt::write_all_at(&dst, &table.to_bytes(), 0)?;
    Ok(Layout { disk, fs_bytes })
}

/// Stage 4: each fixer in order against the mounted guest. Returns what each did
/// and the boot entries the last fixer that chose any chose.
fn fix(
    req: &Request,
    runtime: &Runtime,
    inspection: &Inspection,
    fixers: &[LoadedPlugin],
    root: &Arc<GuestRoot>,
    new_root: &NewRoot,
    mode: Mode,
    cancel: &Arc<AtomicBool>,
) -> Result<(Vec<FixerRun>, Vec<BootEntry>)> {
    let commands: Arc<dyn CommandRunner> = match mode {
        Mode::Real => Arc::new(ChrootCommands {
            cancel: cancel.clone(),
        }),
        Mode::DryRun => Arc::new(DryRunCommands),
    };
    let mut runs = Vec::new();
    let mut entries = Vec::new();
    for plugin in fixers {
        check_cancel(cancel)?;
        let m = &plugin.manifest;
        let context = FixContext {
            os: os_info(inspection),
            target: req.target.into(),
            kernels: inspection
                .kernels
                .iter()
                .map(|k| KernelInfo {
                    version: k.version.clone(),
                    path: k.image.clone(),
                    initrd: k.initrd.clone(),
                    xen_only: k.xen_only,
                })
                .collect(),
            root: new_root.clone(),
            config: req.fixer_config.get(&m.name).cloned().unwrap_or_default(),
            dry_run: mode == Mode::DryRun,
        };
        let call = FixerCall {
            root: root.clone(),
            context,
            // What the user granted at install (installed plugins) bounds the manifest.
            grants: Grants::effective(
                &m.capabilities,
                catalog::granted(&m.name)?.as_ref(),
                req.allowed.get(&m.name),
            )?,
            commands: &commands,
            command_timeout: Duration::from_secs(1800),
        };
        tracing::info!("running fixer {} {}", m.name, m.version);
        let outcome = call_fixer(runtime, plugin, call)
            .with_context(|| format!("fixer {} failed; no output was written", m.name))?;
        if !outcome.report.boot_entries.is_empty() {
            entries = outcome.report.boot_entries.clone();
        }
        let (commands, plan) = (outcome.commands(), journal::render(&outcome.journal));
        runs.push(FixerRun {
            name: m.name.clone(),
            version: m.version.to_string(),
            changes: outcome.report.changes,
            warnings: outcome.report.warnings,
            commands,
            plan,
        });
    }
    Ok((runs, entries))
}

fn os_info(inspection: &Inspection) -> OsInfo {
    let os = &inspection.os;
    OsInfo {
        id: os.id.clone().unwrap_or_default(),
        version_id: os.version.clone().unwrap_or_default(),
        pretty_name: os.pretty_name.clone().unwrap_or_default(),
        id_like: vec![],
        arch: os.arch.clone().unwrap_or_default(),
    }
}

/// Stage 5a: the GRUB 2 menu, written into the guest's /boot/grub/grub.cfg. A guest
/// that keeps a GRUB-legacy config gets it as a menu entry too; a grub.cfg that is
/// only a symlink to that legacy file (the seed's tip) is replaced, not followed.
fn write_grub_cfg(
    root: &GuestRoot,
    inspection: &Inspection,
    entries: &[BootEntry],
    new_root: &NewRoot,
) -> Result<Vec<bootloader::BootEntry>> {
    let legacy = ["/boot/grub/grub.conf", "/boot/grub/menu.lst"]
        .into_iter()
        .find(|p| {
            GuestPath::parse(p)
                .ok()
                .is_some_and(|gp| root.exists(&gp).unwrap_or(false))
        });
    let mut grub_entries: Vec<bootloader::BootEntry> = entries
        .iter()
        .map(|e| bootloader::BootEntry {
            title: e.title.clone(),
            kernel: e.kernel.clone(),
            initrd: e.initrd.clone(),
            extra_cmdline: e.cmdline.clone(),
        })
        .collect();
    if grub_entries.is_empty() && legacy.is_none() {
        // No fixer chose: boot the newest kernel that is not Xen-only.
        let kernel = inspection
            .kernels
            .iter()
            .rev()
            .find(|k| !k.xen_only)
            .with_context(|| {
                "no fixer chose a kernel, the guest has only Xen kernels and no GRUB-legacy config"
                    .to_string()
            })?;
        grub_entries.push(bootloader::BootEntry {
            title: format!(
                "{} ({})",
                inspection.os.pretty_name.as_deref().unwrap_or("Linux"),
                kernel.version
            ),
            kernel: kernel.image.clone(),
            initrd: kernel.initrd.clone(),
            extra_cmdline: String::new(),
        });
    }
    let uuid: uuid::Uuid = new_root
        .uuid
        .parse()
        .context("the root filesystem has no valid UUID")?;
    let text = bootloader::grub_cfg(&bootloader::GrubConfig {
        entries: &grub_entries,
        legacy_config: legacy,
        root_uuid: uuid,
        timeout_secs: 3,
        serial_console: true,
    })?;
    let cfg = GuestPath::parse("/boot/grub/grub.cfg")?;
    root.mkdir_p(&GuestPath::parse("/boot/grub")?, 0o755)?;
    if root.lstat(&cfg).is_ok_and(|m| m.kind == FileKind::Symlink) {
        root.remove(&cfg)?;
    }
    root.write(
        &cfg,
        text.as_bytes(),
        WriteOptions {
            mode: Some(0o644),
            uid: Some(0),
            gid: Some(0),
        },
    )
    .context("writing /boot/grub/grub.cfg into the guest")?;
    Ok(grub_entries)
}

/// Stage 6: the seed's troubleshooting list on the mounted guest.
fn check_guest(
    req: &Request,
    mounted: &GuestMount,
    new_root: &NewRoot,
    entries: &[bootloader::BootEntry],
) -> Result<check::Report> {
    Ok(check::run(&check::CheckInput {
        root: mounted.path().to_path_buf(),
        fs_uuid: new_root.uuid.clone(),
        fs_label: new_root.label.clone(),
        device: new_root.device.clone(),
        target: req.target,
        boot_entries: entries
            .iter()
            .map(|e| check::BootEntry {
                title: e.title.clone(),
                kernel: e.kernel.clone(),
                initrd: e.initrd.clone(),
                // What grub.cfg passes: the host adds root= and ro to the fixer's arguments.
                cmdline: format!("root=UUID={} ro {}", new_root.uuid, e.extra_cmdline),
            })
            .collect(),
    })?)
}

/// Stage 5b: GRUB 2 into the MBR and the gap (after the filesystem is unmounted).
fn install_bootloader(disk: &Path, new_root: &NewRoot) -> Result<()> {
    bootloader::install(&bootloader::GrubInstall {
        disk,
        root_uuid: new_root.uuid.parse()?,
        serial_console: true,
        grub_dir: Path::new(bootloader::GRUB_DIR),
    })?;
    Ok(())
}

/// Stage 7: the output format, written under a temporary name and renamed.
fn package(
    req: &Request,
    runtime: &Runtime,
    packager: &LoadedPlugin,
    disk: &Path,
    inspection: &Inspection,
    cancel: &AtomicBool,
) -> Result<u64> {
    let name = req
        .output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("rehost-vm");
    let mut settings = VmSettings::new(name, req.target.into(), os_info(inspection));
    settings.memory_mb = req.output_spec.memory_mb;
    settings.cpus = req.output_spec.cpus;
    settings.config = req.output_spec.config.clone();
    let outcome = packager_host::package(runtime, packager, disk, &settings, &req.output, cancel)
        .with_context(|| format!("writing {}", req.output.display()))?;
    Ok(outcome.bytes)
}

/// Stage 0 (with `--source`): the source plugin fills a work image in the work
/// directory, which then stands for INPUT.
fn fetch_source(
    spec: &SourceSpec,
    runtime: &Runtime,
    work: &WorkDir,
    cancel: &Arc<AtomicBool>,
) -> Result<PathBuf> {
    let image = work.path("source.img");
    let outcome = source_host::fetch(runtime, &spec.plugin, &spec.options, &image, cancel.clone())
        .with_context(|| format!("source {}", spec.plugin))?;
    tracing::info!(
        "fetched {} bytes from {} (sha256 {})",
        outcome.bytes,
        outcome.report.origin,
        outcome.sha256
    );
    Ok(outcome.work)
}

fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        bail!("interrupted; everything written so far was removed");
    }
    Ok(())
}

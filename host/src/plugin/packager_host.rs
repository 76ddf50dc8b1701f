//! The host side of the `packager` world: a packager decides the output's layout
//! (one disk image, or an archive of descriptor, disks and manifest); the host
//! writes the disk formats natively and owns the output file. The output is built
//! under a temporary name beside the final one and renamed only when the packager
//! returns ok; on an error or a trap nothing is left.

mod output;

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use wasmtime::component::{HasSelf, Linker, ResourceType};

use super::bindings::fixer::rehost::plugin::{log, types};
use super::bindings::packager::rehost::plugin::{packager_host as wit, packager_types};
use super::bindings::packager::Packager;
use super::bindings::RootHandle;
use super::fixer_host::{describe, trap_error};
use super::runtime::{LoadedPlugin, Runtime};
use super::sandbox::{self, sandboxed, Sandbox};
use super::Limits;
use super::{Kind, PluginError};
use crate::disk::formats::Format;
use output::{Disk, OutputError, Reply, Request};

pub use output::Written;
pub use packager_types::{PackageReport, VmSettings};

/// The seed's `VBoxManage modifyvm --memory 512`.
pub const DEFAULT_MEMORY_MB: u32 = 512;

/// Writing a large disk takes as long as it takes (it can be cancelled); a manifest
/// may ask for less.
const PACKAGE_DEADLINE: Duration = Duration::from_secs(24 * 3600);

impl VmSettings {
    /// The seed's defaults: 512 MB, one CPU, no packager config.
    pub fn new(name: impl Into<String>, target: types::TargetHardware, os: types::OsInfo) -> Self {
        VmSettings {
            name: name.into(),
            memory_mb: DEFAULT_MEMORY_MB,
            cpus: 1,
            target,
            os,
            config: String::new(),
        }
    }
}

/// What a packager produced.
#[derive(Debug, Clone)]
pub struct PackageOutcome {
    pub report: PackageReport,
    /// The finished output (the `output` given to [`package`]).
    pub output: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// Every disk and file written into it, in order.
    pub written: Vec<Written>,
}

/// Runs packager `plugin` on the finished raw `disk`, producing `output`. Nothing
/// is left at `output` unless the packager succeeds; an existing file there is
/// replaced only then.
pub fn package(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    disk: &Path,
    settings: &VmSettings,
    output: &Path,
    cancel: &AtomicBool,
) -> Result<PackageOutcome, PluginError> {
    let name = plugin.manifest.name.clone();
    if plugin.manifest.kind != Kind::Packager {
        return Err(PluginError::WrongKind {
            plugin: name,
            expected: Kind::Packager,
            actual: plugin.manifest.kind,
        });
    }
    let failed = |message: String| PluginError::Failed {
        plugin: name.clone(),
        call: "package-disk".into(),
        message,
    };
    let source = File::open(disk)
        .map_err(|e| failed(format!("cannot open the disk {}: {e}", disk.display())))?;
    let size = source
        .metadata()
        .map_err(|e| failed(format!("cannot stat the disk {}: {e}", disk.display())))?
        .len();
    let extents = data_extents(&source, size)
        .map_err(|e| failed(format!("cannot map the data of {}: {e}", disk.display())))?;
    let output_name = output
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            failed(format!(
                "the output {} needs a UTF-8 file name",
                output.display()
            ))
        })?
        .to_string();
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{output_name}."))
        .suffix(".part")
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| {
            failed(format!(
                "cannot create a temporary output in {}: {e}",
                dir.display()
            ))
        })?;

    let (requests, incoming) = bounded::<(Request, Reply)>(0);
    let state = State {
        plugin: name.clone(),
        disk_size: size,
        extents,
        output_name: output_name.clone(),
        requests,
        written: Vec::new(),
        sandbox: Sandbox::new(&limits(runtime, plugin)),
    };
    let (called, finished) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let disk = Disk {
                file: &source,
                size,
            };
            output::serve(tmp.as_file(), &output_name, disk, cancel, incoming)
        });
        let called = call_packager(runtime, plugin, state, settings);
        let finished = writer
            .join()
            .unwrap_or_else(|_| Err(OutputError::Invalid("the output writer panicked".into())));
        (called, finished)
    });
    let (report, written) = called?;
    finished.map_err(|e| failed(e.to_string()))?;
    if cancel.load(Ordering::Relaxed) {
        return Err(failed("cancelled".into()));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| failed(format!("cannot flush the output {}: {e}", output.display())))?;
    let bytes = tmp
        .as_file()
        .metadata()
        .map_err(|e| failed(format!("cannot stat the output: {e}")))?
        .len();
    tmp.persist(output).map_err(|e| {
        failed(format!(
            "cannot rename the finished output to {}: {}",
            output.display(),
            e.error
        ))
    })?;
    Ok(PackageOutcome {
        report,
        output: output.to_path_buf(),
        bytes,
        written,
    })
}

/// Per-call store state. Output requests go to the writer thread of [`package`].
struct State {
    plugin: String,
    disk_size: u64,
    extents: Vec<wit::Extent>,
    output_name: String,
    /// Dropped with the store, which tells the writer to complete the output.
    requests: Sender<(Request, Reply)>,
    written: Vec<Written>,
    sandbox: Sandbox,
}

sandboxed!(State);

/// The runtime's limits for this packager: writing a large disk takes longer than
/// the default per-call time.
fn limits(runtime: &Runtime, plugin: &LoadedPlugin) -> Limits {
    runtime
        .limits
        .for_long_call(&plugin.manifest, PACKAGE_DEADLINE)
}

/// Calls `package-disk` in a fresh store; returns the report and what was written.
fn call_packager(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    state: State,
    settings: &VmSettings,
) -> Result<(PackageReport, Vec<Written>), PluginError> {
    let name = plugin.manifest.name.clone();
    let limits = limits(runtime, plugin);
    let instantiate = |e| PluginError::Instantiate {
        plugin: name.clone(),
        source: e,
    };
    let mut linker: Linker<State> = Linker::new(runtime.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(instantiate)?;
    Packager::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(instantiate)?;
    // The SDK links every world's bindings, so a packager component also imports the
    // fixer world's `guest-fs.root` resource type (never a function of it). Only that
    // type is defined: a blanket `define_unknown_imports_as_traps` would also shadow
    // the newer WASI minor versions std imports, which the linker otherwise matches.
    linker
        .instance("rehost:plugin/guest-fs@0.1.0")
        .and_then(|mut fs| fs.resource("root", ResourceType::host::<RootHandle>(), |_, _| Ok(())))
        .map_err(instantiate)?;
    let mut store = sandbox::store(runtime.engine(), state, &limits);

    let packager =
        Packager::instantiate(&mut store, &plugin.component, &linker).map_err(instantiate)?;
    let result = packager.call_package_disk(&mut store, settings);
    let state = store.into_data();
    match result {
        Ok(Ok(report)) => Ok((report, state.written)),
        Ok(Err(e)) => Err(PluginError::Failed {
            plugin: name,
            call: "package-disk".into(),
            message: describe(&e),
        }),
        Err(trap) => Err(trap_error(&name, "package-disk", trap, &limits)),
    }
}

impl State {
    /// Hands a request to the writer and waits for its answer.
    fn send(&mut self, op: &str, request: Request) -> Result<Option<Written>, types::Error> {
        let lost = || {
            types::Error::Failed(format!(
                "plugin {}: {op}: the output is closed",
                self.plugin
            ))
        };
        let (reply, answer) = bounded(1);
        self.requests.send((request, reply)).map_err(|_| lost())?;
        let result = answer.recv().map_err(|_| lost())?;
        let written = result.map_err(|e| match e {
            OutputError::Invalid(m) => {
                types::Error::Invalid(format!("plugin {}: {op}: {m}", self.plugin))
            }
            e => types::Error::Io(format!("plugin {}: {op}: {e}", self.plugin)),
        })?;
        if let Some(w) = &written {
            tracing::info!(plugin = %self.plugin, name = %w.name, bytes = w.bytes, "{op}");
            self.written.push(w.clone());
        }
        Ok(written)
    }

    fn wrote(&mut self, op: &str, request: Request) -> Result<wit::Written, types::Error> {
        let w = self.send(op, request)?.ok_or_else(|| {
            types::Error::Failed(format!("plugin {}: {op}: nothing was written", self.plugin))
        })?;
        Ok(wit::Written {
            name: w.name,
            bytes: w.bytes,
            sha1: w.sha1,
            sha256: w.sha256,
        })
    }
}

impl types::Host for State {}
impl packager_types::Host for State {}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        super::host_log::log(&self.plugin, level, &message);
    }

    fn progress(&mut self, done: u64, total: u64, message: String) {
        super::host_log::progress(&self.plugin, done, total, &message);
    }
}

impl wit::Host for State {
    fn disk_size(&mut self) -> u64 {
        self.disk_size
    }

    fn disk_extents(&mut self) -> Vec<wit::Extent> {
        self.extents.clone()
    }

    fn output_name(&mut self) -> String {
        self.output_name.clone()
    }

    fn begin_archive(&mut self) -> Result<(), types::Error> {
        self.send("begin-archive", Request::BeginArchive).map(drop)
    }

    fn write_disk(
        &mut self,
        format: wit::DiskFormat,
        name: String,
    ) -> Result<wit::Written, types::Error> {
        let format = match format {
            wit::DiskFormat::Raw => Format::Raw,
            wit::DiskFormat::Qcow2 => Format::Qcow2 { compressed: false },
            wit::DiskFormat::Qcow2Compressed => Format::Qcow2 { compressed: true },
            wit::DiskFormat::VmdkStreamOptimized => Format::VmdkStreamOptimized,
            wit::DiskFormat::Vdi => Format::Vdi,
        };
        self.wrote("write-disk", Request::Disk { format, name })
    }

    fn write_file(&mut self, name: String, data: Vec<u8>) -> Result<wit::Written, types::Error> {
        self.wrote("write-file", Request::File { name, data })
    }
}

/// The data runs of a sparse file, from SEEK_DATA/SEEK_HOLE.
fn data_extents(file: &File, size: u64) -> std::io::Result<Vec<wit::Extent>> {
    use rustix::fs::{seek, SeekFrom};
    let mut extents = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = seek(file, SeekFrom::Hole(start))?.min(size);
        extents.push(wit::Extent {
            offset: start,
            length: end - start,
        });
        pos = end;
    }
    Ok(extents)
}

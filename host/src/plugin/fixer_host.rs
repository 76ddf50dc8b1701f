//! The host side of the `fixer` world: guest files and commands, each request
//! validated, checked against the plugin's grants, then done by the host.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, Resource};

use super::bindings::fixer::rehost::plugin::{fixer_types, guest_exec, guest_fs, log, types};
use super::bindings::fixer::{Fixer, FixerPre};
use super::bindings::RootHandle;
use super::grants::{Access, Grants};
use super::journal::Change;
use super::runtime::{LoadedPlugin, Runtime};
use super::sandbox::{self, sandboxed, Sandbox};
use super::{Kind, PluginError};
use crate::check::initrd::{self, InitrdError};
use crate::guest::root::{GuestPath, GuestRoot, Kind as FileKind, WriteOptions};

pub use fixer_types::{FixContext, FixReport, NewRoot};
pub use types::{BootEntry, KernelInfo, OsInfo, TargetHardware};

/// A command a fixer asked the host to run inside the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    pub network: bool,
}

/// What a command returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandResult {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs granted commands inside the guest. The pipeline supplies the real chroot
/// runner; `rehost plan` supplies one that records instead of running.
pub trait CommandRunner: Send + Sync {
    fn run(&self, root: &GuestRoot, request: &CommandRequest) -> Result<CommandResult, String>;
}

/// A runner for guests where no command may run (the default).
pub struct NoCommands;

impl CommandRunner for NoCommands {
    fn run(&self, _: &GuestRoot, request: &CommandRequest) -> Result<CommandResult, String> {
        Err(format!(
            "running commands is not available here ({})",
            request.argv.join(" ")
        ))
    }
}

/// One fixer call's inputs.
pub struct FixerCall<'a> {
    pub root: Arc<GuestRoot>,
    pub context: FixContext,
    pub grants: Grants,
    pub commands: &'a Arc<dyn CommandRunner>,
    /// Default for commands that ask for no timeout.
    pub command_timeout: Duration,
}

/// What a fixer call produced, plus the journal of everything it changed and ran.
#[derive(Debug, Clone)]
pub struct FixerOutcome {
    pub report: FixReport,
    pub journal: Vec<Change>,
}

impl FixerOutcome {
    /// The commands the fixer ran (or, in a dry run, would have run), in order.
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.journal
            .iter()
            .filter_map(|c| match c {
                Change::Run { argv } => Some(argv.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Per-call store state.
struct State {
    plugin: String,
    grants: Grants,
    root: Arc<GuestRoot>,
    commands: Arc<dyn CommandRunner>,
    command_timeout: Duration,
    journal: Vec<Change>,
    sandbox: Sandbox,
}

sandboxed!(State);

/// Calls a fixer's `fix` in a fresh store with the plugin's limits.
pub fn call_fixer(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    call: FixerCall<'_>,
) -> Result<FixerOutcome, PluginError> {
    let name = plugin.manifest.name.clone();
    if plugin.manifest.kind != Kind::Fixer {
        return Err(PluginError::WrongKind {
            plugin: name,
            expected: Kind::Fixer,
            actual: plugin.manifest.kind,
        });
    }
    let limits = runtime.limits.for_manifest(&plugin.manifest);
    let instantiate = |e| PluginError::Instantiate {
        plugin: name.clone(),
        source: e,
    };
    let pre = runtime
        .instance_pre(&plugin.digest, || -> wasmtime::Result<FixerPre<State>> {
            let mut linker: Linker<State> = Linker::new(runtime.engine());
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
            Fixer::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
            FixerPre::new(linker.instantiate_pre(&plugin.component)?)
        })
        .map_err(instantiate)?;

    let state = State {
        plugin: name.clone(),
        grants: call.grants,
        root: call.root,
        commands: call.commands.clone(),
        command_timeout: call.command_timeout,
        journal: Vec::new(),
        sandbox: Sandbox::new(&limits),
    };
    let mut store = sandbox::store(runtime.engine(), state, &limits);

    let fixer = pre.instantiate(&mut store).map_err(instantiate)?;
    let root = store
        .data_mut()
        .sandbox
        .table
        .push(RootHandle)
        .map_err(|e| instantiate(e.into()))?;
    let result = fixer.call_fix(&mut store, root, &call.context);
    let journal = std::mem::take(&mut store.data_mut().journal);
    match result {
        Ok(Ok(report)) => Ok(FixerOutcome { report, journal }),
        Ok(Err(e)) => Err(PluginError::Failed {
            plugin: name,
            call: "fix".into(),
            message: describe(&e),
        }),
        Err(trap) => Err(trap_error(&name, "fix", trap, &limits)),
    }
}

/// Turns a trap into an error that says what stopped the plugin.
pub(crate) fn trap_error(
    plugin: &str,
    call: &str,
    err: wasmtime::Error,
    limits: &super::Limits,
) -> PluginError {
    let (plugin, call) = (plugin.to_string(), call.to_string());
    if let Some(wasmtime::Trap::Interrupt) = err.downcast_ref::<wasmtime::Trap>() {
        return PluginError::Deadline {
            plugin,
            call,
            secs: limits.deadline.as_secs(),
        };
    }
    let text = format!("{err:#}");
    if text.contains("growing memory") || text.contains("memory limit") {
        return PluginError::Memory {
            plugin,
            call,
            mib: limits.memory_bytes >> 20,
        };
    }
    PluginError::Trap {
        plugin,
        call,
        reason: text,
    }
}

pub(crate) fn describe(e: &types::Error) -> String {
    match e {
        types::Error::Denied(m) => format!("denied: {m}"),
        types::Error::NotFound(m) => format!("not found: {m}"),
        types::Error::Invalid(m) => format!("invalid request: {m}"),
        types::Error::Io(m) => format!("i/o error: {m}"),
        types::Error::Failed(m) => m.clone(),
    }
}

/// Whether a path's last component is followed when checking where it leads.
#[derive(Clone, Copy)]
enum Follow {
    /// Operations on the file a path leads to (read, write, chmod).
    Last,
    /// Operations on the directory entry itself (remove, rename, lstat, readlink).
    ParentsOnly,
}

impl State {
    /// Validates a guest path and checks it, and where it really leads, against
    /// the grants.
    fn checked(
        &self,
        op: &str,
        path: &str,
        access: Access,
        follow: Follow,
    ) -> Result<GuestPath, types::Error> {
        let parsed = GuestPath::parse(path)
            .map_err(|e| types::Error::Invalid(format!("plugin {}: {op}: {e}", self.plugin)))?;
        let deny = |d: super::grants::Denied| types::Error::Denied(d.0);
        self.grants
            .check_path(&self.plugin, op, parsed.as_str(), access)
            .map_err(deny)?;
        // Where the path really leads once the guest's own symlinks are followed.
        let real = match follow {
            Follow::Last => self.root.resolve(&parsed),
            Follow::ParentsOnly => self.root.resolve_parent(&parsed),
        };
        match real {
            Ok(real) if real != parsed => {
                self.grants
                    .check_path(&self.plugin, op, real.as_str(), access)
                    .map_err(|d| {
                        types::Error::Denied(format!("{} ({path} is a symlink to {real})", d.0))
                    })?;
            }
            _ => {}
        }
        Ok(parsed)
    }

    fn io(&self, op: &str, path: &str, e: io::Error) -> types::Error {
        let msg = format!("plugin {}: {op} {path}: {e}", self.plugin);
        match e.kind() {
            io::ErrorKind::NotFound => types::Error::NotFound(msg),
            io::ErrorKind::PermissionDenied => types::Error::Denied(msg),
            io::ErrorKind::InvalidInput => types::Error::Invalid(msg),
            _ => types::Error::Io(msg),
        }
    }

    /// Checks, then runs one filesystem operation, mapping errors for the plugin.
    fn op<T>(
        &mut self,
        op: &str,
        path: &str,
        access: Access,
        follow: Follow,
        f: impl FnOnce(&GuestRoot, &GuestPath) -> io::Result<T>,
    ) -> Result<T, types::Error> {
        let p = self.checked(op, path, access, follow)?;
        tracing::debug!(plugin = %self.plugin, op, path = %p, "guest-fs");
        f(&self.root, &p).map_err(|e| self.io(op, path, e))
    }
}

impl types::Host for State {}
impl fixer_types::Host for State {}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        super::host_log::log(&self.plugin, level, &message);
    }

    fn progress(&mut self, done: u64, total: u64, message: String) {
        super::host_log::progress(&self.plugin, done, total, &message);
    }
}

impl guest_fs::Host for State {}

impl guest_fs::HostRoot for State {
    fn read(&mut self, _: Resource<RootHandle>, path: String) -> Result<Vec<u8>, types::Error> {
        self.op("read", &path, Access::Read, Follow::Last, |r, p| r.read(p))
    }

    fn write(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
        data: Vec<u8>,
        options: guest_fs::WriteOptions,
    ) -> Result<(), types::Error> {
        let opts = WriteOptions {
            mode: options.mode,
            uid: options.uid,
            gid: options.gid,
        };
        let mut before = None;
        self.op("write", &path, Access::Write, Follow::Last, |r, p| {
            before = r.read(p).ok();
            r.write(p, &data, opts)
        })?;
        self.journal.push(Change::Write {
            path,
            before,
            after: data,
        });
        Ok(())
    }

    fn stat(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
    ) -> Result<guest_fs::FileStat, types::Error> {
        let md = self.op("stat", &path, Access::Read, Follow::ParentsOnly, |r, p| {
            r.lstat(p)
        })?;
        Ok(guest_fs::FileStat {
            kind: match md.kind {
                FileKind::File => guest_fs::FileKind::File,
                FileKind::Directory => guest_fs::FileKind::Directory,
                FileKind::Symlink => guest_fs::FileKind::Symlink,
                FileKind::Other => guest_fs::FileKind::Other,
            },
            mode: md.mode,
            uid: md.uid,
            gid: md.gid,
            size: md.size,
            link_target: md.link_target,
        })
    }

    fn exists(&mut self, _: Resource<RootHandle>, path: String) -> Result<bool, types::Error> {
        self.op(
            "exists",
            &path,
            Access::Read,
            Follow::ParentsOnly,
            |r, p| r.exists(p),
        )
    }

    fn list_dir(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
    ) -> Result<Vec<String>, types::Error> {
        // Listing reveals the names inside a directory, so it needs a read grant
        // that covers its entries ("/etc/*" lists /etc), not the directory itself.
        let entry = format!("{}/entry", path.trim_end_matches('/'));
        self.checked("list-dir", &entry, Access::Read, Follow::Last)?;
        let p = GuestPath::parse(&path).map_err(|e| types::Error::Invalid(e.to_string()))?;
        self.root
            .list_dir(&p)
            .map_err(|e| self.io("list-dir", &path, e))
    }

    fn mkdir_p(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
        mode: u32,
    ) -> Result<(), types::Error> {
        let existed = self.op("mkdir-p", &path, Access::Write, Follow::Last, |r, p| {
            let existed = r.exists(p)?;
            r.mkdir_p(p, mode).map(|()| existed)
        })?;
        if !existed {
            self.journal.push(Change::Mkdir { path });
        }
        Ok(())
    }

    fn remove(&mut self, _: Resource<RootHandle>, path: String) -> Result<(), types::Error> {
        self.op(
            "remove",
            &path,
            Access::Write,
            Follow::ParentsOnly,
            |r, p| r.remove(p),
        )?;
        self.journal.push(Change::Remove { path });
        Ok(())
    }

    fn rename(
        &mut self,
        _: Resource<RootHandle>,
        old_path: String,
        new_path: String,
    ) -> Result<(), types::Error> {
        let to = self.checked("rename", &new_path, Access::Write, Follow::ParentsOnly)?;
        self.op(
            "rename",
            &old_path,
            Access::Write,
            Follow::ParentsOnly,
            |r, from| r.rename(from, &to),
        )?;
        self.journal.push(Change::Rename {
            from: old_path,
            to: new_path,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        _: Resource<RootHandle>,
        target: String,
        link: String,
    ) -> Result<(), types::Error> {
        self.op(
            "symlink",
            &link,
            Access::Write,
            Follow::ParentsOnly,
            |r, p| r.symlink(&target, p),
        )?;
        self.journal.push(Change::Symlink { target, link });
        Ok(())
    }

    fn readlink(&mut self, _: Resource<RootHandle>, path: String) -> Result<String, types::Error> {
        self.op(
            "readlink",
            &path,
            Access::Read,
            Follow::ParentsOnly,
            |r, p| r.readlink(p),
        )
    }

    fn chmod(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
        mode: u32,
    ) -> Result<(), types::Error> {
        self.op("chmod", &path, Access::Write, Follow::Last, |r, p| {
            r.chmod(p, mode)
        })?;
        self.journal.push(Change::Chmod { path, mode });
        Ok(())
    }

    fn chown(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
        uid: u32,
        gid: u32,
    ) -> Result<(), types::Error> {
        self.op("chown", &path, Access::Write, Follow::Last, |r, p| {
            r.chown(p, uid, gid)
        })?;
        self.journal.push(Change::Chown { path, uid, gid });
        Ok(())
    }

    fn initrd_modules(
        &mut self,
        _: Resource<RootHandle>,
        path: String,
    ) -> Result<Vec<String>, types::Error> {
        self.op(
            "initrd-modules",
            &path,
            Access::Read,
            Follow::Last,
            |r, p| {
                let file = r.open_file(p)?;
                // Errors name the guest path, never where the guest is mounted.
                match initrd::read_file(file, std::path::Path::new(p.as_str())) {
                    Ok(image) => Ok(image.module_names().into_iter().collect()),
                    Err(InitrdError::Io { source, .. }) => Err(source),
                    Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
                }
            },
        )
    }

    fn drop(&mut self, handle: Resource<RootHandle>) -> wasmtime::Result<()> {
        self.sandbox.table.delete(handle)?;
        Ok(())
    }
}

impl guest_exec::Host for State {
    fn run(
        &mut self,
        request: guest_exec::ExecRequest,
    ) -> Result<guest_exec::ExecOutput, types::Error> {
        let argv0 = request.argv.first().cloned().ok_or_else(|| {
            types::Error::Invalid(format!("plugin {}: run: empty argv", self.plugin))
        })?;
        self.grants
            .check_command(&self.plugin, &argv0)
            .map_err(|d| types::Error::Denied(d.0))?;
        let timeout = match request.timeout_secs {
            0 => self.command_timeout,
            s => Duration::from_secs(s.into()),
        };
        let req = CommandRequest {
            argv: request.argv.clone(),
            env: request.env,
            stdin: request.stdin,
            timeout,
            network: self.grants.guest_network(),
        };
        tracing::info!(plugin = %self.plugin, "running in guest: {}", request.argv.join(" "));
        self.journal.push(Change::Run { argv: request.argv });
        let out = self.commands.run(&self.root, &req).map_err(|e| {
            types::Error::Failed(format!("plugin {}: run {argv0}: {e}", self.plugin))
        })?;
        Ok(guest_exec::ExecOutput {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// The real runner: each command in its own chroot and private namespaces, through
/// `guest::exec` (network only when the fixer is granted it).
pub struct ChrootCommands {
    pub cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl CommandRunner for ChrootCommands {
    fn run(&self, root: &GuestRoot, request: &CommandRequest) -> Result<CommandResult, String> {
        let mut cmd = crate::guest::exec::GuestCommand::new(root.host_path(), &request.argv)
            .timeout(request.timeout)
            .network(request.network);
        for (k, v) in &request.env {
            cmd = cmd.env(k, v);
        }
        if let Some(stdin) = &request.stdin {
            cmd = cmd.stdin(stdin.clone());
        }
        let out = cmd.run(Some(&self.cancel)).map_err(|e| e.to_string())?;
        Ok(CommandResult {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// The runner of `rehost plan`: commands are recorded in the journal, not run, and
/// answer success with no output.
pub struct DryRunCommands;

impl CommandRunner for DryRunCommands {
    fn run(&self, _: &GuestRoot, _: &CommandRequest) -> Result<CommandResult, String> {
        Ok(CommandResult::default())
    }
}

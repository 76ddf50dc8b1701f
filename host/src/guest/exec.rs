//! Running a command inside the guest root.
//!
//! The child unshares a mount namespace (private propagation, so nothing it mounts is
//! seen by the host), a PID namespace (when the command ends, the kernel kills
//! everything it started: no daemon outlives it holding the guest mounted) and, unless
//! network is granted, a network namespace (only a down loopback). Inside it gets a
//! fresh /proc, the host's /dev (bound), a read-only /sys and an empty tmpfs /run, then
//! switches root to the guest, leaving the host's tree out of its namespace. All of
//! this dies with the namespaces; nothing is left to unmount. The argv is passed to
//! execvp as is, never through a shell.
//!
//! The command runs as PID 1 of its namespace, like `unshare --pid --fork` or a
//! container without an init: signals from inside the guest reach it only if it
//! handles them, and only SIGKILL from outside does.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

/// The PATH a guest command starts with.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default cap on captured stdout and on captured stderr.
pub const DEFAULT_OUTPUT_LIMIT: usize = 16 << 20;
/// How often the waiting loop looks at the cancel flag and the deadline.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no command given to run in guest {}", root.display())]
    EmptyArgv { root: PathBuf },
    #[error("guest root {}: {source}", root.display())]
    Root { root: PathBuf, source: io::Error },
    #[error("guest root {} has no /{dir} directory (needed to run commands in it)", root.display())]
    MissingMountPoint { root: PathBuf, dir: &'static str },
    #[error("a path or argument for `{command}` contains a NUL byte")]
    Nul { command: String },
    #[error(
        "starting `{command}` in guest {}: {source} (setting up its namespaces, mounts \
         and root switch, or executing it inside the guest)",
        root.display()
    )]
    Spawn {
        command: String,
        root: PathBuf,
        source: io::Error,
    },
    #[error("waiting for `{command}`: {source}")]
    Wait { command: String, source: io::Error },
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    TimedOut { command: String, timeout: Duration },
    #[error("`{command}` was cancelled and killed")]
    Cancelled { command: String },
}

/// What a finished guest command left.
#[derive(Debug)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes past the output limit, read and thrown away.
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// A command to run inside a guest root (a mounted guest filesystem or any directory
/// tree with /dev, /proc and /sys directories).
#[derive(Debug, Clone)]
pub struct GuestCommand {
    root: PathBuf,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    network: bool,
    output_limit: usize,
}

impl GuestCommand {
    /// `argv[0]` is looked up in the guest's PATH unless it contains a slash.
    pub fn new<I, S>(root: impl Into<PathBuf>, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        GuestCommand {
            root: root.into(),
            argv: argv.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            stdin: None,
            timeout: None,
            network: false,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }

    /// Adds an environment variable (the environment otherwise holds only PATH and
    /// HOME=/root).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Bytes fed to the command's stdin (otherwise stdin is /dev/null).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kills the command (and everything it started) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the command shares the host's network (default: no network at all).
    pub fn network(mut self, granted: bool) -> Self {
        self.network = granted;
        self
    }

    /// Cap on captured stdout and on captured stderr, each; the rest is counted and
    /// dropped.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Runs the command and waits for it. Setting `cancel` kills it promptly.
    /// A non-zero exit is not an error: look at [`ExecOutput::status`].
    pub fn run(&self, cancel: Option<&AtomicBool>) -> Result<ExecOutput, ExecError> {
        let command = self.display();
        let Some(program) = self.argv.first() else {
            return Err(ExecError::EmptyArgv {
                root: self.root.clone(),
            });
        };
        let setup = Setup::new(&self.root, self.network, &command)?;
        let mut cmd = Command::new(program);
        cmd.args(&self.argv[1..])
            .env_clear()
            .env("PATH", GUEST_PATH)
            .env("HOME", "/root")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a kill reaches everything it started.
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: `enter_guest` makes only async-signal-safe system calls on memory
        // prepared before the fork, as a pre_exec closure must.
        unsafe { cmd.pre_exec(move || setup.enter_guest(parent)) };
        let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
            command: command.clone(),
            root: self.root.clone(),
            source,
        })?;

        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let limit = self.output_limit;
        thread::scope(|scope| {
            if let (Some(mut pipe), Some(bytes)) = (stdin, self.stdin.as_deref()) {
                // A command that exits without reading all of its input is not an
                // error: ignore EPIPE and friends.
                scope.spawn(move || {
                    let _ = pipe.write_all(bytes);
                });
            }
            let out = scope.spawn(move || capture(stdout, limit));
            let err = scope.spawn(move || capture(stderr, limit));
            let ended = self.wait(&mut child, cancel, &command);
            let (stdout, stdout_dropped) = out.join().expect("capture thread does not panic");
            let (stderr, stderr_dropped) = err.join().expect("capture thread does not panic");
            Ok(ExecOutput {
                status: ended?,
                stdout,
                stderr,
                stdout_dropped,
                stderr_dropped,
            })
        })
    }

    /// Waits for the child, killing its process group on cancel, timeout or a failed
    /// wait (so the capture threads see the pipes close).
    fn wait(
        &self,
        child: &mut Child,
        cancel: Option<&AtomicBool>,
        command: &str,
    ) -> Result<ExitStatus, ExecError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            let failure = match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Err(source) => ExecError::Wait {
                    command: command.to_string(),
                    source,
                },
                Ok(None) if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) => {
                    ExecError::Cancelled {
                        command: command.to_string(),
                    }
                }
                Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => ExecError::TimedOut {
                    command: command.to_string(),
                    timeout: self.timeout.unwrap_or_default(),
                },
                Ok(None) => {
                    thread::sleep(POLL_INTERVAL);
                    continue;
                }
            };
            kill_group(child);
            // Reap it; the failure above is what gets reported.
            let _ = child.wait();
            return Err(failure);
        }
    }

    fn display(&self) -> String {
        let words: Vec<_> = self.argv.iter().map(|a| a.to_string_lossy()).collect();
        words.join(" ")
    }
}

/// SIGKILL to the child's process group. The command runs as init of its own PID
/// namespace, so its death takes every process it started along.
fn kill_group(child: &Child) {
    let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    if let Err(e) = kill_process_group(pid, Signal::KILL) {
        tracing::warn!("killing process group {pid:?}: {e}");
    }
}

/// Reads `pipe` to its end, keeping the first `limit` bytes; returns them and the
/// number of bytes dropped.
fn capture(mut pipe: impl Read, limit: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 64 << 10];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let keep = n.min(limit - kept.len());
                kept.extend_from_slice(&buf[..keep]);
                dropped += (n - keep) as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading a guest command's output: {e}");
                break;
            }
        }
    }
    if dropped > 0 {
        tracing::warn!("guest command output: kept {limit} bytes, dropped {dropped}");
    }
    (kept, dropped)
}

/// Everything the child needs, as C strings made before the fork: between fork and
/// exec only async-signal-safe calls are allowed, so no allocation.
struct Setup {
    root: CString,
    dev: CString,
    proc: CString,
    sys: CString,
    run: Option<CString>,
    network: bool,
}

impl Setup {
    fn new(root: &Path, network: bool, command: &str) -> Result<Self, ExecError> {
        // Absolute and free of symlinks: the child mounts below it and pivots into it.
        let root = &root.canonicalize().map_err(|source| ExecError::Root {
            root: root.to_path_buf(),
            source,
        })?;
        let mount_point = |dir: &'static str| -> Result<Option<CString>, ExecError> {
            let path = root.join(dir);
            // A symlink here would make the mount land outside the guest.
            match path.symlink_metadata() {
                Ok(m) if m.is_dir() => c_string(path.as_os_str(), command).map(Some),
                _ => Ok(None),
            }
        };
        let required = |dir: &'static str| {
            mount_point(dir)?.ok_or_else(|| ExecError::MissingMountPoint {
                root: root.to_path_buf(),
                dir,
            })
        };
        Ok(Setup {
            root: c_string(root.as_os_str(), command)?,
            dev: required("dev")?,
            proc: required("proc")?,
            sys: required("sys")?,
            // Old guests (CentOS 5) have no /run.
            run: mount_point("run")?,
            network,
        })
    }

    /// Runs in the forked child, before exec.
    fn enter_guest(&self, parent: u32) -> io::Result<()> {
        let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID;
        if !self.network {
            flags |= libc::CLONE_NEWNET;
        }
        // The child must die with rehost, or it would keep the guest mounted.
        set_death_signal()?;
        // SAFETY (whole function): plain system calls on prepared C strings.
        unsafe {
            if libc::getppid() as u32 != parent {
                libc::_exit(1); // rehost is already gone
            }
            check(libc::unshare(flags))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // A new PID namespace applies to children only: fork its init, which goes
            // on to exec the command; this process waits and passes its status on.
            let init = check(libc::fork())?;
            if init > 0 {
                relay_exit(init);
            }
            set_death_signal()?;
            let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check(libc::mount(
                c"proc".as_ptr(),
                self.proc.as_ptr(),
                c"proc".as_ptr(),
                nosuid_nodev_noexec,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"/dev".as_ptr(),
                self.dev.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            // A fresh sysfs shows this network namespace's devices; read-only so the
            // guest cannot reconfigure the host's.
            check(libc::mount(
                c"sysfs".as_ptr(),
                self.sys.as_ptr(),
                c"sysfs".as_ptr(),
                nosuid_nodev_noexec | libc::MS_RDONLY,
                std::ptr::null(),
            ))?;
            if let Some(run) = &self.run {
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    run.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=0755".as_ptr().cast(),
                ))?;
            }
            // Switch root with pivot_root rather than chroot, then drop the host's
            // tree: the guest's namespace then holds no host mount (nor any other
            // rehost mount to pin), and there is no chroot to escape from. pivot_root
            // needs the new root to be a mount point, hence the bind onto itself;
            // pivot_root(".", ".") stacks the old root on the new one, and the lazy
            // unmount takes it off.
            check(libc::mount(
                self.root.as_ptr(),
                self.root.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            check(libc::chdir(self.root.as_ptr()))?;
            check(
                libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int,
            )?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
        }
        Ok(())
    }
}

fn set_death_signal() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) }).map(drop)
}

/// In the intermediate process: wait for the PID namespace's init and exit the same
/// way. Closes every descriptor first, so the command alone holds the output pipes
/// (and std's exec-error pipe, whose closing tells `spawn` the exec happened).
fn relay_exit(init: libc::pid_t) -> ! {
    // SAFETY: async-signal-safe calls only; this process never returns to Rust code.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        while libc::waitpid(init, &mut status, 0) < 0 {
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(127);
            }
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
            libc::_exit(128 + signal);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn c_string(s: &OsStr, command: &str) -> Result<CString, ExecError> {
    CString::new(s.as_bytes()).map_err(|_| ExecError::Nul {
        command: command.to_string(),
    })
}

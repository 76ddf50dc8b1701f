//! `rehost boot-test DISK`: boots a disk image under qemu-system-x86_64 on hardware like
//! the target's, proves it reaches a login prompt on the serial console, logs in and runs
//! commands there.
//!
//! The guest's first serial port is qemu's stdin/stdout. `-nographic` (with `-nodefaults`
//! and explicit devices) also makes SeaBIOS mirror its messages there, so a disk the BIOS
//! cannot boot fails within seconds on "No bootable device." instead of at the timeout.
//! Every byte of the console goes to a log file whose path is in the report and in every
//! failure. The disk is attached with `-snapshot`: a boot test never changes it.
//!
//! Acceleration is TCG (`-cpu max`) unless `REHOST_BOOT_TEST_KVM=1`: on nested hosts
//! /dev/kvm exists and opens, yet guests hang under it, and only a real boot would tell.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::Serialize;

/// The emulator every boot test runs.
pub const QEMU: &str = "qemu-system-x86_64";
/// Set to `1` to boot with KVM (`-accel kvm -cpu host`) instead of TCG.
pub const KVM_ENV: &str = "REHOST_BOOT_TEST_KVM";

/// How long to wait for qemu to exit after `poweroff -f` before killing it.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);
/// How long a panicking kernel gets to finish printing its panic.
const PANIC_GRACE: Duration = Duration::from_secs(5);
/// How often the shell-ready probe is typed again while no shell has answered it.
const PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// How many console lines a failure report quotes.
const TAIL_LINES: usize = 40;

/// The format qemu is told the disk has (never left to probing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
    Vmdk,
    Vdi,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
        }
    }

    /// The format a file name's extension names; `.img`, `.raw` and the ext2/3/4 image
    /// extensions are raw. `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "raw" | "img" | "ext2" | "ext3" | "ext4" => Some(DiskFormat::Raw),
            other => other.parse().ok(),
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DiskFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            "vmdk" => Ok(DiskFormat::Vmdk),
            "vdi" => Ok(DiskFormat::Vdi),
            other => Err(format!(
                "unknown disk format {other:?} (expected raw, qcow2, vmdk or vdi)"
            )),
        }
    }
}

pub use crate::target::Target;

/// qemu's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    /// KVM only when `REHOST_BOOT_TEST_KVM=1`, TCG otherwise (see the module docs).
    pub fn from_env() -> Self {
        match std::env::var_os(KVM_ENV) {
            Some(v) if v == "1" => Accel::Kvm,
            _ => Accel::Tcg,
        }
    }
}

/// Boot this kernel directly (qemu `-kernel/-initrd/-append`) instead of the disk's
/// bootloader: for trying a guest's kernel and userland before it has a bootloader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The kernel command line, e.g. `root=/dev/vda console=ttyS0`.
    pub append: String,
}

/// What to boot, on what, and what to do once logged in.
#[derive(Debug, Clone)]
pub struct BootTestOptions {
    pub disk: PathBuf,
    pub format: DiskFormat,
    pub target: Target,
    pub memory_mib: u32,
    pub accel: Accel,
    /// Applies to reaching the login prompt, to each login step and to each command.
    pub timeout: Duration,
    pub user: String,
    pub password: String,
    /// Run in order in the login shell, each one line of sh; outputs are returned.
    pub commands: Vec<String>,
    pub direct_kernel: Option<DirectKernel>,
    /// Where the whole console transcript is written.
    pub console_log: PathBuf,
}

impl BootTestOptions {
    /// Defaults: VirtualBox hardware, 1024 MiB, [`Accel::from_env`], 600 s, user root, no
    /// commands, the console log next to the disk as `DISK.console.log`.
    pub fn new(disk: impl Into<PathBuf>, format: DiskFormat, password: impl Into<String>) -> Self {
        let disk = disk.into();
        let mut console_log = disk.clone().into_os_string();
        console_log.push(".console.log");
        BootTestOptions {
            disk,
            format,
            target: Target::Virtualbox,
            memory_mib: 1024,
            accel: Accel::from_env(),
            timeout: Duration::from_secs(600),
            user: "root".to_string(),
            password: password.into(),
            commands: Vec::new(),
            direct_kernel: None,
            console_log: console_log.into(),
        }
    }
}

/// One command run after login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandOutput {
    pub command: String,
    /// stdout and stderr as the console showed them (trailing newline included),
    /// carriage returns removed.
    pub output: String,
    /// The command's exit status (`$?`).
    pub status: i32,
}

/// What a boot test saw; also carried by a failure, as far as the test got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootReport {
    pub reached_login: bool,
    pub seconds_to_login: Option<f64>,
    pub commands: Vec<CommandOutput>,
    pub console_log: PathBuf,
}

/// The console event a boot test waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    LoginPrompt,
    PasswordPrompt,
    Shell,
    Command { index: usize, command: String },
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::LoginPrompt => f.write_str("the login prompt (`login: `)"),
            Waiting::PasswordPrompt => f.write_str("the password prompt (`Password: `)"),
            Waiting::Shell => f.write_str("a shell after logging in"),
            Waiting::Command { index, command } => {
                write!(f, "command #{index} (`{command}`) to finish")
            }
        }
    }
}

/// Why a boot, once started, did not get through.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(
        "no login prompt: the BIOS found no bootable device (SeaBIOS: \"No bootable device.\"); \
         the disk has no boot code in its MBR or no bootable partition"
    )]
    NoBootableDevice,
    #[error("no login prompt: the guest kernel panicked (\"Kernel panic - not syncing\")")]
    KernelPanic,
    #[error(
        "no login prompt: none appeared on the serial console within {} s (the guest needs a \
         getty on ttyS0, e.g. from console=ttyS0 on its kernel command line)",
        .after.as_secs()
    )]
    NoLoginPrompt { after: Duration },
    #[error("timed out after {} s waiting for {waiting}", .after.as_secs())]
    TimedOut { waiting: Waiting, after: Duration },
    #[error("qemu exited while waiting for {waiting}; qemu said: {stderr}")]
    QemuExited { waiting: Waiting, stderr: String },
    #[error("the guest rejected the login of {user} (\"Login incorrect\"): check the password")]
    LoginRejected { user: String },
    #[error("cannot write the console log {path}: {source}")]
    ConsoleLog { path: PathBuf, source: io::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum BootTestError {
    #[error("boot test: cannot read the {what} {path}: {source}")]
    Input {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "boot test: cannot create the console log {path}: {source} (choose a writable location)"
    )]
    CreateLog { path: PathBuf, source: io::Error },
    #[error(
        "boot test: cannot start {QEMU}: {source} (install qemu-system-x86; scripts/setup.sh does)"
    )]
    Spawn { source: io::Error },
    #[error(
        "boot test of {disk} failed: {failure}\nconsole log: {console_log}\nlast console lines:\n{tail}",
        disk = .disk.display(),
        console_log = .report.console_log.display()
    )]
    Failed {
        disk: PathBuf,
        failure: Failure,
        /// The console's last lines, escape sequences and carriage returns removed.
        tail: String,
        report: Box<BootReport>,
    },
}

/// qemu's arguments for these options, console on stdin/stdout.
pub fn qemu_args(opts: &BootTestOptions) -> Vec<OsString> {
    let mut args = strs(&["-nographic", "-nodefaults", "-no-reboot", "-machine", "pc"]);
    args.extend(match opts.accel {
        Accel::Tcg => strs(&["-accel", "tcg", "-cpu", "max"]),
        Accel::Kvm => strs(&["-accel", "kvm", "-cpu", "host"]),
    });
    args.extend(strs(&["-m", &opts.memory_mib.to_string()]));
    args.extend(strs(&[
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
    ]));
    let mut drive = OsString::from("if=none,id=d0,file=");
    drive.push(escape_option_value(&opts.disk));
    drive.push(format!(",format={}", opts.format));
    args.extend(strs(&["-snapshot", "-drive"]));
    args.push(drive);
    args.extend(match opts.target {
        Target::Virtualbox => strs(&[
            "-device",
            "ahci,id=ahci",
            "-device",
            "ide-hd,drive=d0,bus=ahci.0",
            "-netdev",
            "user,id=n0",
            "-device",
            "e1000,netdev=n0,romfile=",
        ]),
        Target::Kvm => strs(&[
            "-device",
            "virtio-blk-pci,drive=d0",
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
        ]),
    });
    if let Some(direct) = &opts.direct_kernel {
        args.push("-kernel".into());
        args.push(direct.kernel.clone().into());
        if let Some(initrd) = &direct.initrd {
            args.push("-initrd".into());
            args.push(initrd.clone().into());
        }
        args.push("-append".into());
        args.push(direct.append.clone().into());
    }
    args
}

fn strs(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// qemu option values end at a comma; a literal comma is written twice.
fn escape_option_value(path: &Path) -> OsString {
    let mut escaped = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        escaped.push(b);
        if b == b',' {
            escaped.push(b',');
        }
    }
    std::os::unix::ffi::OsStringExt::from_vec(escaped)
}

/// Boots `opts.disk`, logs in, runs `opts.commands` and powers the guest off. qemu is
/// killed on every way out.
pub fn run(opts: &BootTestOptions) -> Result<BootReport, BootTestError> {
    let mut inputs = vec![("disk image", &opts.disk)];
    if let Some(direct) = &opts.direct_kernel {
        inputs.push(("kernel", &direct.kernel));
        if let Some(initrd) = &direct.initrd {
            inputs.push(("initrd", initrd));
        }
    }
    for (what, path) in inputs {
        File::open(path).map_err(|source| BootTestError::Input {
            what,
            path: path.clone(),
            source,
        })?;
    }
    let log = File::create(&opts.console_log).map_err(|source| BootTestError::CreateLog {
        path: opts.console_log.clone(),
        source,
    })?;

    let started = Instant::now();
    let (mut qemu, mut console) = Qemu::spawn(opts, log)?;
    let mut report = BootReport {
        reached_login: false,
        seconds_to_login: None,
        commands: Vec::new(),
        console_log: opts.console_log.clone(),
    };
    let outcome = session(&mut console, opts, started, &mut report).and_then(|()| {
        // -no-reboot makes qemu exit when the guest powers off; if it does not, it is
        // killed below all the same.
        console.send("poweroff -f\n", &Waiting::Shell)?;
        console.wait_until(Instant::now() + POWEROFF_GRACE, |_| None::<((), usize)>)?;
        Ok(())
    });
    let stderr = qemu.stop();
    let drained = console.drain();
    let failure = match (outcome, drained) {
        (Ok(()), Ok(())) => return Ok(report),
        (Err(Failure::QemuExited { waiting, .. }), _) => Failure::QemuExited {
            waiting,
            stderr: if stderr.trim().is_empty() {
                "nothing".to_string()
            } else {
                stderr.trim().to_string()
            },
        },
        (Err(failure), _) | (Ok(()), Err(failure)) => failure,
    };
    Err(BootTestError::Failed {
        disk: opts.disk.clone(),
        failure,
        tail: console_tail(&console.transcript, TAIL_LINES),
        report: Box::new(report),
    })
}

/// Login, then each command, filling in `report` as it goes.
fn session(
    console: &mut Console,
    opts: &BootTestOptions,
    started: Instant,
    report: &mut BootReport,
) -> Result<(), Failure> {
    #[derive(Clone, Copy)]
    enum Boot {
        Login,
        NoBootableDevice,
        Panic,
    }
    let boot = console.wait_for(
        opts.timeout,
        &Waiting::LoginPrompt,
        &[
            ("login: ", Boot::Login),
            ("No bootable device", Boot::NoBootableDevice),
            ("Kernel panic - not syncing", Boot::Panic),
        ],
    );
    match boot {
        Ok(Boot::Login) => {}
        Ok(Boot::NoBootableDevice) => return Err(Failure::NoBootableDevice),
        Ok(Boot::Panic) => {
            // Let the panic's reason and call trace reach the log before qemu is killed.
            console.wait_until(Instant::now() + PANIC_GRACE, |text| {
                find_end(text, b"---[ end Kernel panic").map(|end| ((), end))
            })?;
            return Err(Failure::KernelPanic);
        }
        Err(Failure::TimedOut { after, .. }) => return Err(Failure::NoLoginPrompt { after }),
        Err(other) => return Err(other),
    }
    report.reached_login = true;
    report.seconds_to_login = Some((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);

    console.send(&format!("{}\n", opts.user), &Waiting::PasswordPrompt)?;
    console.wait_for(
        opts.timeout,
        &Waiting::PasswordPrompt,
        &[("Password: ", ())],
    )?;
    console.send(&format!("{}\n", opts.password), &Waiting::Shell)?;
    wait_for_shell(console, opts)?;

    for (i, command) in opts.commands.iter().enumerate() {
        let index = i + 1;
        let waiting = Waiting::Command {
            index,
            command: command.clone(),
        };
        // The markers are printed with %s so the typed line itself never contains them.
        console.send(
            &format!(
                "printf '__RH_%s_{index}__\\n' BEGIN; {command}\n\
                 printf '\\n__RH_%s_{index}__ %s\\n' END \"$?\"\n"
            ),
            &waiting,
        )?;
        let (output, status) = console
            .wait_until_or_fail(opts.timeout, &waiting, |text| command_result(text, index))?;
        report.commands.push(CommandOutput {
            command: command.clone(),
            output,
            status,
        });
    }
    Ok(())
}

/// Waits until the login shell runs commands, and quiets it: no echo, no prompts (they
/// would land in command outputs), no pagers. The probe line is typed again from time to
/// time: PAM may flush input typed while it switched echo back on.
fn wait_for_shell(console: &mut Console, opts: &BootTestOptions) -> Result<(), Failure> {
    enum Shell {
        Rejected,
        Ready,
        Prompt,
    }
    let deadline = Instant::now() + opts.timeout;
    loop {
        let round = deadline.min(Instant::now() + PROBE_INTERVAL);
        let seen = console.wait_until(round, |text| {
            if let Some(end) = find_end(text, b"Login incorrect") {
                Some((Shell::Rejected, end))
            } else if let Some(end) = find_end(text, b"__RH_READY__") {
                Some((Shell::Ready, end))
            } else if text.ends_with(b"# ") || text.ends_with(b"$ ") {
                Some((Shell::Prompt, text.len()))
            } else {
                None
            }
        })?;
        match seen {
            Seen::Found(Shell::Rejected) => {
                return Err(Failure::LoginRejected {
                    user: opts.user.clone(),
                })
            }
            Seen::Found(Shell::Ready) => return Ok(()),
            Seen::Exited => {
                return Err(Failure::QemuExited {
                    waiting: Waiting::Shell,
                    stderr: String::new(),
                })
            }
            Seen::TimedOut if Instant::now() >= deadline => {
                return Err(Failure::TimedOut {
                    waiting: Waiting::Shell,
                    after: opts.timeout,
                })
            }
            Seen::Found(Shell::Prompt) | Seen::TimedOut => console.send(
                "stty -echo; export TERM=dumb PAGER=cat SYSTEMD_PAGER=cat; PS1= PS2=; \
                 printf '__RH_%s__\\n' READY\n",
                &Waiting::Shell,
            )?,
        }
    }
}

/// Finds command #`index`'s delimited output and status in the console text; returns
/// them and how much text they used.
fn command_result(text: &[u8], index: usize) -> Option<((String, i32), usize)> {
    let begin = format!("__RH_BEGIN_{index}__");
    let end = format!("__RH_END_{index}__ ");
    let body_start = find_end(text, begin.as_bytes())?;
    let body_end = body_start + find(&text[body_start..], end.as_bytes())?;
    let status_start = body_end + end.len();
    let digits = text[status_start..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .count();
    // The status is complete once the line ending after it has arrived.
    let after = *text.get(status_start + digits)?;
    if after != b'\r' && after != b'\n' {
        return None;
    }
    let status = std::str::from_utf8(&text[status_start..status_start + digits])
        .ok()?
        .parse()
        .ok()?;
    let mut output: String = String::from_utf8_lossy(&text[body_start..body_end])
        .chars()
        .filter(|&c| c != '\r')
        .collect();
    // Drop the line end after BEGIN and the one END's printf added in front of itself.
    if output.starts_with('\n') {
        output.remove(0);
    }
    if output.ends_with('\n') {
        output.pop();
    }
    Some(((output, status), status_start + digits))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The offset just past the first occurrence of `needle`.
fn find_end(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    find(haystack, needle).map(|i| i + needle.len())
}

/// The last `lines` lines of a console transcript as a terminal would show them: escape
/// sequences removed, and of a line rewritten after a carriage return only its last
/// version.
fn console_tail(transcript: &[u8], lines: usize) -> String {
    let text = strip_escapes(&String::from_utf8_lossy(transcript));
    let shown: Vec<&str> = text
        .split('\n')
        .map(|line| {
            let line = line.trim_end_matches('\r');
            line.rsplit('\r').next().unwrap_or(line)
        })
        .collect();
    let shown = match shown.last() {
        Some(&"") => &shown[..shown.len() - 1],
        _ => &shown[..],
    };
    if shown.is_empty() {
        return "(the console printed nothing)".to_string();
    }
    shown[shown.len().saturating_sub(lines)..].join("\n")
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI (ESC [ params final-byte) or a two-character escape (ESC c).
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The running emulator; killed and reaped when dropped.
struct Qemu {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Qemu {
    fn spawn(opts: &BootTestOptions, log: File) -> Result<(Qemu, Console), BootTestError> {
        let mut child = Command::new(QEMU)
            .args(qemu_args(opts))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BootTestError::Spawn { source })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BootTestError::Spawn {
                source: io::Error::other("qemu's stdin, stdout or stderr is not a pipe"),
            });
        };
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = io::BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        let qemu = Qemu {
            child,
            stderr: Some(stderr),
        };
        let console = Console::new(stdout, stdin, log, opts.console_log.clone());
        Ok((qemu, console))
    }

    /// Kills qemu (if still running) and returns what it wrote to stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Seen<T> {
    Found(T),
    TimedOut,
    Exited,
}

/// The guest's serial console: what it printed (logged as it arrives) and its keyboard.
struct Console {
    chunks: Receiver<Vec<u8>>,
    input: ChildStdin,
    log: File,
    log_path: PathBuf,
    transcript: Vec<u8>,
    /// Where the next wait starts looking: text before it was already matched.
    cursor: usize,
    closed: bool,
}

impl Console {
    fn new(
        mut output: impl Read + Send + 'static,
        input: ChildStdin,
        log: File,
        log_path: PathBuf,
    ) -> Self {
        let (tx, chunks) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match output.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Console {
            chunks,
            input,
            log,
            log_path,
            transcript: Vec::new(),
            cursor: 0,
            closed: false,
        }
    }

    fn send(&mut self, text: &str, waiting: &Waiting) -> Result<(), Failure> {
        self.input
            .write_all(text.as_bytes())
            .and_then(|()| self.input.flush())
            .map_err(|_| Failure::QemuExited {
                waiting: waiting.clone(),
                stderr: String::new(),
            })
    }

    /// Reads the console until `found` recognises the unread text (returning a value and
    /// how many bytes it used), the deadline passes or qemu closes the console.
    fn wait_until<T>(
        &mut self,
        deadline: Instant,
        mut found: impl FnMut(&[u8]) -> Option<(T, usize)>,
    ) -> Result<Seen<T>, Failure> {
        loop {
            if let Some((value, used)) = found(&self.transcript[self.cursor..]) {
                self.cursor += used;
                return Ok(Seen::Found(value));
            }
            if self.closed {
                return Ok(Seen::Exited);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Seen::TimedOut);
            }
            match self.chunks.recv_timeout(deadline - now) {
                Ok(chunk) => {
                    self.record(&chunk)?;
                    // Take everything already there before matching again.
                    while let Ok(chunk) = self.chunks.try_recv() {
                        self.record(&chunk)?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Ok(Seen::TimedOut),
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Like `wait_until` for `timeout` from now, with timeout and exit turned into
    /// failures.
    fn wait_until_or_fail<T>(
        &mut self,
        timeout: Duration,
        waiting: &Waiting,
        found: impl FnMut(&[u8]) -> Option<(T, usize)>,
    ) -> Result<T, Failure> {
        match self.wait_until(Instant::now() + timeout, found)? {
            Seen::Found(value) => Ok(value),
            Seen::TimedOut => Err(Failure::TimedOut {
                waiting: waiting.clone(),
                after: timeout,
            }),
            Seen::Exited => Err(Failure::QemuExited {
                waiting: waiting.clone(),
                stderr: String::new(),
            }),
        }
    }

    /// Waits for the first of several strings and returns the value paired with it.
    fn wait_for<T: Copy>(
        &mut self,
        timeout: Duration,
        waiting: &Waiting,
        patterns: &[(&str, T)],
    ) -> Result<T, Failure> {
        self.wait_until_or_fail(timeout, waiting, |text| {
            patterns
                .iter()
                .filter_map(|(needle, value)| {
                    find(text, needle.as_bytes()).map(|at| (at, *value, at + needle.len()))
                })
                .min_by_key(|(at, _, _)| *at)
                .map(|(_, value, end)| (value, end))
        })
    }

    /// Logs whatever the console still holds, until qemu's end closes it.
    fn drain(&mut self) -> Result<(), Failure> {
        while let Ok(chunk) = self.chunks.recv() {
            self.record(&chunk)?;
        }
        Ok(())
    }

    fn record(&mut self, chunk: &[u8]) -> Result<(), Failure> {
        self.transcript.extend_from_slice(chunk);
        self.log
            .write_all(chunk)
            .map_err(|source| Failure::ConsoleLog {
                path: self.log_path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_result_takes_output_between_markers_and_status() {
        let text = b"printf ...\r\n__RH_BEGIN_2__\r\nhello\r\nworld\r\n\r\n__RH_END_2__ 3\r\n# ";
        let ((output, status), used) = command_result(text, 2).expect("complete result");
        assert_eq!(output, "hello\nworld\n");
        assert_eq!(status, 3);
        assert_eq!(&text[used..], b"\r\n# ");
    }

    #[test]
    fn command_result_waits_for_the_whole_status() {
        assert!(command_result(b"__RH_BEGIN_1__\r\nx\r\n__RH_END_1__ 12", 1).is_none());
        assert!(command_result(b"__RH_BEGIN_1__\r\nx\r\n", 1).is_none());
        assert!(command_result(b"__RH_BEGIN_1__\r\n__RH_END_1__ 0\r\n", 2).is_none());
    }

    #[test]
    fn command_result_of_silent_command_is_empty() {
        let ((output, status), _) =
            command_result(b"__RH_BEGIN_1__\r\n\r\n__RH_END_1__ 0\r\n", 1).expect("result");
        assert_eq!((output.as_str(), status), ("", 0));
    }

    #[test]
    fn tail_strips_escapes_and_keeps_last_lines() {
        let text =
            b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\nline2\r\n[\x1b[0;32m  OK  \x1b[0m] x\r\n";
        assert_eq!(console_tail(text, 2), "line2\n[  OK  ] x");
        assert_eq!(console_tail(text, 10), "SeaBIOS\nline2\n[  OK  ] x");
    }

    #[test]
    fn tail_shows_the_last_version_of_rewritten_lines() {
        let text = b"  Starting a long unit name...\r[  OK  ] Started a.\r\r\nlogin: ";
        assert_eq!(console_tail(text, 5), "[  OK  ] Started a.\nlogin: ");
        assert_eq!(console_tail(b"", 5), "(the console printed nothing)");
    }

    #[test]
    fn option_values_double_commas() {
        assert_eq!(escape_option_value(Path::new("/a,b/c.img")), "/a,,b/c.img");
    }
}

//! rehost's own mount namespace.
//!
//! The `rehost` binary calls [`enter_private_mount_namespace`] first thing in `main`.
//! From then on every mount it makes (guest roots, offset loop mounts) exists only in
//! this process's namespace: when the process dies, however it dies (error, panic,
//! SIGINT, SIGTERM, SIGKILL), the kernel tears the namespace down with its mounts, and
//! the loop devices behind them (attached with autoclear, see `mount`) detach.

use std::fs;
use std::io;

use rustix::mount::{mount_change, MountPropagationFlags};
use rustix::thread::{unshare_unsafe, UnshareFlags};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "cannot enter a private mount namespace: this process already runs {threads} threads, \
         and unshare(CLONE_NEWNS) would move only the calling one; call \
         enter_private_mount_namespace() at the start of main, before any thread is spawned"
    )]
    MultiThreaded { threads: usize },
    #[error("cannot count this process's threads (reading /proc/self/status): {0}")]
    ThreadCount(#[source] io::Error),
    #[error("unshare(CLONE_NEWNS) failed: {0} (rehost needs root, or CAP_SYS_ADMIN, to mount)")]
    Unshare(#[source] io::Error),
    #[error("making / recursively private in rehost's mount namespace failed: {0}")]
    MakePrivate(#[source] io::Error),
}

/// Moves this process into a new mount namespace in which `/` is recursively private,
/// so mounts made afterwards never propagate to the host and vanish with the process.
///
/// Must run while the process has a single thread. The kernel accepts
/// `unshare(CLONE_NEWNS)` from a multi-threaded process but applies it to the calling
/// thread only; the other threads would keep mounting in the host's namespace, where
/// their mounts would outlive rehost. So this checks the thread count and refuses with
/// [`NamespaceError::MultiThreaded`] instead.
pub fn enter_private_mount_namespace() -> Result<(), NamespaceError> {
    let threads = thread_count().map_err(NamespaceError::ThreadCount)?;
    if threads != 1 {
        return Err(NamespaceError::MultiThreaded { threads });
    }
    // SAFETY: CLONE_NEWNS does not unshare the file descriptor table, which is the
    // hazard `unshare_unsafe` warns about, and the process has one thread.
    unsafe { unshare_unsafe(UnshareFlags::NEWNS) }
        .map_err(|e| NamespaceError::Unshare(e.into()))?;
    // A copied namespace keeps the host's shared peer groups: without this, mounts
    // made here would still appear on the host.
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| NamespaceError::MakePrivate(e.into()))
}

/// The `Threads:` count of /proc/self/status.
fn thread_count() -> io::Result<usize> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
}

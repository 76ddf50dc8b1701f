//! Mounting a region of an image file (a bare filesystem, or one partition of a disk)
//! through a loop device, and releasing both on every path out.
//!
//! Three layers keep a mount or loop device from outliving rehost:
//! - [`GuestMount`] unmounts and detaches on drop (errors, panics, a handled Ctrl-C);
//! - the loop device is attached with `LO_FLAGS_AUTOCLEAR`, so the kernel detaches it
//!   as soon as its last user (our descriptor, the mount) is gone;
//! - rehost runs in its own mount namespace (`namespace`), so when the process dies,
//!   even by SIGKILL, the kernel drops the mount, which releases the device.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rustix::io::Errno;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use tempfile::TempDir;

/// The filesystem types rehost mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext2,
    Ext3,
    Ext4,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext2 => "ext2",
            FsType::Ext3 => "ext3",
            FsType::Ext4 => "ext4",
        }
    }

    fn has_journal(self) -> bool {
        self != FsType::Ext2
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which bytes of the image to mount, and how.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub fstype: FsType,
    /// Byte offset of the filesystem in the image (0 for a bare filesystem).
    pub offset: u64,
    /// Length of the region; `None` runs to the end of the file.
    pub length: Option<u64>,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("opening image {}: {source}", path.display())]
    OpenImage { path: PathBuf, source: io::Error },
    #[error("opening /dev/loop-control: {0} (is the loop module loaded? try `modprobe loop`)")]
    LoopControl(#[source] io::Error),
    #[error("asking /dev/loop-control for a free loop device: {0}")]
    NoFreeDevice(#[source] io::Error),
    #[error("attaching {} to {}: {source}", image.display(), device.display())]
    Attach {
        image: PathBuf,
        device: PathBuf,
        source: io::Error,
    },
    #[error(
        "attaching {}: other processes took every free loop device {attempts} times in a row; retry",
        image.display()
    )]
    LoopRace { image: PathBuf, attempts: u32 },
    #[error("creating a temporary mount point: {0}")]
    MountPoint(#[source] io::Error),
    #[error(
        "mounting {} (offset {offset}) through {} as {fstype} failed: {source} \
         (wrong filesystem type, or a damaged filesystem: try `e2fsck -fn`)",
        image.display(), device.display()
    )]
    Mount {
        image: PathBuf,
        offset: u64,
        device: PathBuf,
        fstype: FsType,
        source: io::Error,
    },
    #[error(
        "unmounting {}: {source} (a process still uses files below it; it is detached lazily instead)",
        target.display()
    )]
    Unmount { target: PathBuf, source: io::Error },
    #[error("removing mount point {}: {source}", path.display())]
    RemoveMountPoint { path: PathBuf, source: io::Error },
}

/// A filesystem mounted from an image through a loop device, on a temporary
/// directory. Dropping it unmounts and detaches; [`GuestMount::unmount`] does the same
/// and reports errors.
#[derive(Debug)]
pub struct GuestMount {
    // Field order matters for Drop: unmount (in Drop::drop), then detach the device,
    // then remove the directory.
    device: LoopDevice,
    dir: Option<TempDir>,
    mounted: bool,
}

/// Mounts the region of `image` described by `options` on a new temporary directory.
///
/// A read-only mount is read-only all the way down: the image is opened read-only, the
/// loop device is read-only, the mount has MS_RDONLY, and ext3/ext4 get `noload` so a
/// dirty journal is not replayed (the kernel would refuse, or write, otherwise).
pub fn mount_image(image: &Path, options: &MountOptions) -> Result<GuestMount, MountError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!options.read_only)
        .open(image)
        .map_err(|source| MountError::OpenImage {
            path: image.to_path_buf(),
            source,
        })?;
    let device = LoopDevice::attach(image, &file, options)?;
    drop(file); // the loop device holds its own reference to the image
    let dir = tempfile::Builder::new()
        .prefix("rehost-guest-")
        .tempdir()
        .map_err(MountError::MountPoint)?;

    let mut flags = MountFlags::NODEV | MountFlags::NOSUID;
    let mut data = c"";
    if options.read_only {
        flags |= MountFlags::RDONLY;
        if options.fstype.has_journal() {
            data = c"noload";
        }
    }
    mount(
        device.path(),
        dir.path(),
        options.fstype.as_str(),
        flags,
        Some(data),
    )
    .map_err(|e| MountError::Mount {
        image: image.to_path_buf(),
        offset: options.offset,
        device: device.path().to_path_buf(),
        fstype: options.fstype,
        source: e.into(),
    })?;
    Ok(GuestMount {
        device,
        dir: Some(dir),
        mounted: true,
    })
}

impl GuestMount {
    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the mount point lives as long as the guard")
            .path()
    }

    /// The loop device, e.g. `/dev/loop3`.
    pub fn device(&self) -> &Path {
        self.device.path()
    }

    /// Unmounts, detaches the loop device and removes the mount point, reporting the
    /// first error. On error the guard still cleans up (lazily) when dropped.
    pub fn unmount(mut self) -> Result<(), MountError> {
        let target = self.path().to_path_buf();
        unmount_retrying_busy(&target).map_err(|source| MountError::Unmount {
            target: target.clone(),
            source,
        })?;
        self.mounted = false;
        let dir = self.dir.take().expect("not yet removed");
        dir.close().map_err(|source| MountError::RemoveMountPoint {
            path: target,
            source,
        })
        // The loop device detaches when `self` drops here.
    }
}

impl Drop for GuestMount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let target = self.path().to_path_buf();
        if let Err(e) = unmount_retrying_busy(&target) {
            // Busy: take it out of the tree now; the kernel frees it (and the
            // autoclear loop device) once the last user lets go.
            tracing::warn!(
                "unmounting {}: {e}; detaching it lazily instead",
                target.display()
            );
            if let Err(e) = unmount(&target, UnmountFlags::DETACH) {
                tracing::error!("lazy unmount of {} failed: {e}", target.display());
            }
        }
    }
}

/// How long a busy unmount is retried: a process forked by another thread holds
/// copies of every open descriptor (a file open on this mount, say) until it execs.
const UNMOUNT_ATTEMPTS: u32 = 20;
const UNMOUNT_RETRY: Duration = Duration::from_millis(50);

fn unmount_retrying_busy(target: &Path) -> io::Result<()> {
    let mut attempt = 1;
    loop {
        match unmount(target, UnmountFlags::empty()) {
            Err(Errno::BUSY) if attempt < UNMOUNT_ATTEMPTS => {
                attempt += 1;
                thread::sleep(UNMOUNT_RETRY);
            }
            other => return other.map_err(io::Error::from),
        }
    }
}

// Loop device ioctls and structures from <linux/loop.h>; the libc crate has none of
// them.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` (LOOP_CONFIGURE, Linux 5.8+).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// How often to retry when another process grabs the free device first.
const ATTACH_ATTEMPTS: u32 = 32;

/// An attached loop device. We keep it open for as long as it is in use, which pins
/// the binding (nobody else can be handed this device); dropping it detaches.
#[derive(Debug)]
struct LoopDevice {
    file: File,
    path: PathBuf,
}

impl LoopDevice {
    fn attach(image: &Path, backing: &File, options: &MountOptions) -> Result<Self, MountError> {
        Self::attach_with(image, backing, options, configure)
    }

    /// Attaches with `bind` (the LOOP_CONFIGURE way or the pre-5.8 one) to a free
    /// device, retrying when another process wins the race for it.
    fn attach_with(
        image: &Path,
        backing: &File,
        options: &MountOptions,
        bind: Bind,
    ) -> Result<Self, MountError> {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")
            .map_err(MountError::LoopControl)?;
        for _ in 0..ATTACH_ATTEMPTS {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument.
            let number = cvt(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) })
                .map_err(MountError::NoFreeDevice)?;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let file = OpenOptions::new()
                .read(true)
                .write(!options.read_only)
                .open(&path)
                .map_err(|source| MountError::Attach {
                    image: image.to_path_buf(),
                    device: path.clone(),
                    source,
                })?;
            match bind(&file, backing, options) {
                Ok(()) => return Ok(LoopDevice { file, path }),
                // Another process bound it between GET_FREE and our configure.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(source) => {
                    return Err(MountError::Attach {
                        image: image.to_path_buf(),
                        device: path,
                        source,
                    })
                }
            }
        }
        Err(MountError::LoopRace {
            image: image.to_path_buf(),
            attempts: ATTACH_ATTEMPTS,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // With no other user this detaches now; if a (lazily unmounted) filesystem
        // still holds the device, the kernel detaches it when that goes (autoclear).
        // ENXIO: already detached.
        // SAFETY: LOOP_CLR_FD takes no argument.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), LOOP_CLR_FD) };
        if let Err(e) = cvt(rc) {
            if e.raw_os_error() != Some(libc::ENXIO) {
                tracing::warn!("detaching {}: {e}", self.path.display());
            }
        }
    }
}

/// Binds a loop device (first argument) to the region of a backing file.
type Bind = fn(&File, &File, &MountOptions) -> io::Result<()>;

/// Binds `device` to the region of `backing`, read-only if asked, with autoclear.
fn configure(device: &File, backing: &File, options: &MountOptions) -> io::Result<()> {
    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: loop_info(options),
        reserved: [0; 8],
    };
    // SAFETY: `config` is a valid loop_config that outlives the call.
    match cvt(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) }) {
        Ok(_) => Ok(()),
        // Kernels before 5.8 do not know LOOP_CONFIGURE.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {
            configure_legacy(device, backing, options)
        }
        Err(e) => Err(e),
    }
}

/// The pre-5.8 way: bind, then set offset, size and autoclear. Read-only follows from
/// the descriptors being opened read-only (SET_STATUS cannot set it).
fn configure_legacy(device: &File, backing: &File, options: &MountOptions) -> io::Result<()> {
    let device = device.as_raw_fd();
    // SAFETY: LOOP_SET_FD takes the backing descriptor as its argument.
    cvt(unsafe { libc::ioctl(device, LOOP_SET_FD, backing.as_raw_fd()) })?;
    let info = loop_info(options);
    // SAFETY: `info` is a valid loop_info64 that outlives the call.
    if let Err(e) = cvt(unsafe { libc::ioctl(device, LOOP_SET_STATUS64, &info) }) {
        // SAFETY: LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(device, LOOP_CLR_FD) };
        return Err(e);
    }
    Ok(())
}

fn loop_info(options: &MountOptions) -> LoopInfo64 {
    let mut flags = LO_FLAGS_AUTOCLEAR;
    if options.read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: options.offset,
        lo_sizelimit: options.length.unwrap_or(0),
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop attribute from sysfs, e.g. `loop/offset` or `ro`.
    fn sysfs(device: &LoopDevice, attribute: &str) -> String {
        let name = device.path().file_name().unwrap().to_str().unwrap();
        std::fs::read_to_string(format!("/sys/block/{name}/{attribute}"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Both ways of binding give the same device: region, read-only, autoclear.
    /// (Needs root and loop devices, like the integration tests.)
    #[test]
    fn both_bind_ways_set_region_read_only_and_autoclear() {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(4 << 20).unwrap();
        let backing = File::open(image.path()).unwrap();
        let options = MountOptions {
            fstype: FsType::Ext4,
            offset: 1 << 20,
            length: Some(2 << 20),
            read_only: true,
        };
        for bind in [configure as Bind, configure_legacy] {
            let device = LoopDevice::attach_with(image.path(), &backing, &options, bind).unwrap();
            assert_eq!(sysfs(&device, "loop/offset"), "1048576");
            assert_eq!(sysfs(&device, "loop/sizelimit"), "2097152");
            assert_eq!(sysfs(&device, "size"), "4096", "512-byte sectors");
            assert_eq!(sysfs(&device, "ro"), "1");
            assert_eq!(sysfs(&device, "loop/autoclear"), "1");
            let name = device.path().file_name().unwrap().to_owned();
            drop(device);
            let bound = Path::new("/sys/block").join(name).join("loop");
            assert!(!bound.exists(), "detached on drop");
        }
    }
}

//! A copy-on-write view of a guest root: overlayfs with the (read-only) guest as
//! the lower layer and a temporary upper layer, so `rehost plan` can run fixers for
//! real against the guest while nothing below changes.

use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("cannot create the overlay's scratch directory: {0}")]
    Scratch(std::io::Error),
    #[error(
        "cannot mount an overlay over {lower}: {source} (is the overlay filesystem available?)"
    )]
    Mount {
        lower: PathBuf,
        source: std::io::Error,
    },
}

/// A mounted overlay; unmounted (and its scratch removed) on drop.
pub struct Overlay {
    merged: PathBuf,
    // Held for its Drop: removes upper/, work/ and the mount point.
    _scratch: tempfile::TempDir,
}

impl Overlay {
    /// Mounts `lower` copy-on-write. Call inside the private mount namespace.
    pub fn mount(lower: &Path) -> Result<Self, OverlayError> {
        let scratch = tempfile::Builder::new()
            .prefix("rehost-overlay-")
            .tempdir()
            .map_err(OverlayError::Scratch)?;
        let (upper, work, merged) = (
            scratch.path().join("upper"),
            scratch.path().join("work"),
            scratch.path().join("merged"),
        );
        for dir in [&upper, &work, &merged] {
            std::fs::create_dir(dir).map_err(OverlayError::Scratch)?;
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let data = std::ffi::CString::new(data).map_err(|e| OverlayError::Scratch(e.into()))?;
        mount(
            "overlay",
            &merged,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(|e| OverlayError::Mount {
            lower: lower.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Self {
            merged,
            _scratch: scratch,
        })
    }

    /// The merged view to run fixers against.
    pub fn path(&self) -> &Path {
        &self.merged
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.merged, UnmountFlags::DETACH) {
            tracing::warn!("unmounting overlay {}: {e}", self.merged.display());
        }
    }
}

//! Progress reporting and cancellation, shared by the reader, the workers and the
//! writer of one conversion.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::FormatError;

pub(crate) struct Control<'a> {
    progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
    cancel: Option<&'a AtomicBool>,
    total: AtomicU64,
    done: AtomicU64,
}

impl<'a> Control<'a> {
    pub fn new(
        progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
        cancel: Option<&'a AtomicBool>,
    ) -> Self {
        Control {
            progress,
            cancel,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    /// Sets the number of source bytes the conversion will read.
    pub fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.report(0);
    }

    /// Fails with `Cancelled` once the caller raised the flag.
    pub fn check(&self) -> Result<(), FormatError> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(FormatError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Records `bytes` more source bytes as converted.
    pub fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.report(done);
    }

    fn report(&self, done: u64) {
        if let Some(progress) = self.progress {
            progress(done, self.total.load(Ordering::Relaxed));
        }
    }
}

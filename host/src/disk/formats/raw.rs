//! Sparse raw copy: only non-zero 64 KiB pieces are written, so holes (and zeros
//! inside data extents) stay holes; the length is set at the end.

use std::fs::File;

use super::control::Control;
use super::output::Output;
use super::pipeline;
use super::source::Source;
use super::FormatError;

/// Granularity of the zero test.
const PIECE: u64 = 1 << 16;

/// Copies `size` bytes of `file`; returns the image length (`size`).
pub(crate) fn write(
    file: &File,
    size: u64,
    out: Output,
    ctl: &Control,
) -> Result<u64, FormatError> {
    let src = Source::new(file, size, PIECE)?;
    pipeline::sequential(&src, ctl, |batch| {
        batch
            .nonzero_runs()
            .into_iter()
            .try_for_each(|(offset, data)| {
                // The last piece is zero-padded past the disk end in memory only.
                let len = data.len().min((size - offset) as usize);
                out.write_at(&data[..len], offset)
            })
    })?;
    out.set_len(size)?;
    Ok(size)
}

//! Driving a conversion over the source batches: a reader thread, optional worker
//! threads transforming batches (compression), and the in-order writer on the calling
//! thread. Reading always runs on a thread of its own, so reads and writes overlap.
//!
//! The writer checks for cancellation between batches and reports progress as
//! batches are written; the reader stops at cancellation too.

use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::control::Control;
use super::source::{Batch, Source};
use super::FormatError;

/// Hands every batch to `sink`, in disk order.
pub(crate) fn sequential(
    src: &Source,
    ctl: &Control,
    sink: impl FnMut(Batch) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    parallel(src, 0, ctl, || |batch| batch, sink)
}

/// What the in-order writer takes next: a batch being transformed, or a read error
/// (reported in its place in the order).
enum Next<T> {
    Pending { read: u64, result: Receiver<T> },
    Failed(FormatError),
}

/// Transforms every batch on `threads` worker threads (on the reader thread if 0) and
/// hands the results to `sink` in disk order, on the calling thread. `worker` makes
/// each thread's transform (so it can own reusable state such as a compressor).
///
/// Memory stays bounded: the reader may run at most `2 × threads + 2` batches ahead of
/// the writer, whatever the disk size.
pub(crate) fn parallel<T, W, F>(
    src: &Source,
    threads: usize,
    ctl: &Control,
    worker: W,
    mut sink: impl FnMut(T) -> Result<(), FormatError>,
) -> Result<(), FormatError>
where
    T: Send,
    W: Fn() -> F + Sync,
    F: FnMut(Batch) -> T,
{
    ctl.start(src.data_bytes());
    thread::scope(|scope| {
        let (work_tx, work_rx) = bounded::<(Batch, Sender<T>)>(threads.max(1));
        let (order_tx, order_rx) = bounded::<Next<T>>(2 * threads + 2);

        // Reader. The writer's order queue is filled before the work queue, so a slow
        // writer stops the reader. Each step ends quietly once the writer has gone.
        let worker = &worker;
        scope.spawn(move || {
            let mut inline = (threads == 0).then(worker);
            for batch in src.batches() {
                if ctl.check().is_err() {
                    break;
                }
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = order_tx.send(Next::Failed(e));
                        break;
                    }
                };
                let (result_tx, result) = bounded(1);
                let pending = Next::Pending {
                    read: batch.read,
                    result,
                };
                if order_tx.send(pending).is_err() {
                    break;
                }
                let handed_on = match inline.as_mut() {
                    Some(transform) => {
                        // As in the workers: a result the writer no longer wants is dropped.
                        let _ = result_tx.send(transform(batch));
                        true
                    }
                    None => work_tx.send((batch, result_tx)).is_ok(),
                };
                if !handed_on {
                    break;
                }
            }
        });

        for _ in 0..threads {
            let work_rx = work_rx.clone();
            scope.spawn(move || {
                let mut transform = worker();
                for (batch, result_tx) in work_rx {
                    // The writer may have stopped (error or cancel): drop the result.
                    let _ = result_tx.send(transform(batch));
                }
            });
        }
        drop(work_rx);

        let written = (|| {
            for next in order_rx.iter() {
                ctl.check()?;
                match next {
                    Next::Pending { read, result } => {
                        sink(result.recv().map_err(|_| FormatError::WorkerLost)?)?;
                        ctl.advance(read);
                    }
                    Next::Failed(e) => return Err(e),
                }
            }
            ctl.check()
        })();
        // Unblocks the reader, which then releases the workers.
        drop(order_rx);
        written
    })
}

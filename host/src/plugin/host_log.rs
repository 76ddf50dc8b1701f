//! The `log` interface every world imports, forwarded to tracing under the
//! plugin's name.

use super::bindings::fixer::rehost::plugin::log::Level;

pub(crate) fn log(plugin: &str, level: Level, message: &str) {
    match level {
        Level::Trace => tracing::trace!(plugin, "{message}"),
        Level::Debug => tracing::debug!(plugin, "{message}"),
        Level::Info => tracing::info!(plugin, "{message}"),
        Level::Warn => tracing::warn!(plugin, "{message}"),
        Level::Error => tracing::error!(plugin, "{message}"),
    }
}

pub(crate) fn progress(plugin: &str, done: u64, total: u64, message: &str) {
    tracing::info!(plugin, done, total, "{message}");
}

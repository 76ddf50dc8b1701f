//! Output disk formats (in progress).

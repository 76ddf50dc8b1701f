//! The check stage (in progress).

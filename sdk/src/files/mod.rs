//! File helpers (in progress).

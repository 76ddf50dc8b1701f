//! Boot test (in progress).

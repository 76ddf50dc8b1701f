//! Helpers the integration test binaries share. Each binary uses some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the real `rehost` binary with the shared plugin cache.
pub fn rehost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rehost"))
        .args(args)
        .env("XDG_CACHE_HOME", cache_dir())
        .output()
        .expect("run rehost")
}

/// One plugin cache for every test binary, so components compile once.
pub fn cache_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("rehost-test-plugin-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The cached image a tests/fixtures script builds (or has built before).
pub fn fixture(script: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("bash")
        .arg(root.join("tests/fixtures").join(script))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// sha256sum is native code: a debug build of sha2 takes minutes on the 2 GiB fixture.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Loop devices backed by `path` or files below it (none may outlive a command).
pub fn loops_on(path: &Path) -> String {
    let out = Command::new("losetup").arg("-a").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&*path.to_string_lossy()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a system tool that must succeed; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

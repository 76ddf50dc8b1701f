//! Builds every plugin crate of the workspace for wasm32-wasip2, so the stock
//! plugins ship inside the `rehost` binary and tests find their test plugins.
//!
//! A nested cargo with its own target directory (as wasmtime's test-programs do),
//! so it never waits on the lock of the build that runs this script.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugin crates that ship inside the binary, as (directory, crate name).
const STOCK_DIRS: &[&str] = &["plugins/fixers", "plugins/packagers", "plugins/sources"];
/// Plugin crates built only for tests and examples.
const EXTRA_DIRS: &[&str] = &["tests/plugins", "examples"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["wit", "sdk", "plugins", "tests/plugins", "examples"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=REHOST_SKIP_PLUGIN_BUILD");

    let stock = crates_in(&workspace, STOCK_DIRS);
    let extra = crates_in(&workspace, EXTRA_DIRS);
    let target_dir = workspace.join("target/wasm-plugins");
    let wasm_dir = target_dir.join("wasm32-wasip2/release");

    if std::env::var_os("REHOST_SKIP_PLUGIN_BUILD").is_none() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&workspace)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target_dir)
            // Debug sections would make every component several MB: each load hashes
            // and maps it. Custom sections such as the manifest are kept.
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            // The outer build's flags are for the host, not for wasm.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS");
        for (name, _) in stock.iter().chain(&extra) {
            cmd.args(["-p", name]);
        }
        let status = cmd.status().expect("cannot run cargo to build the plugins");
        if !status.success() {
            panic!(
                "building the plugins for wasm32-wasip2 failed (is the target installed? \
                 `rustup target add wasm32-wasip2`)"
            );
        }
    }

    let mut generated = String::from("/// Stock plugins: (crate name, component bytes).\npub static STOCK: &[(&str, &[u8])] = &[\n");
    for (name, _) in &stock {
        let file = wasm_dir.join(format!("{}.wasm", name.replace('-', "_")));
        generated.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    generated.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("stock_plugins.rs");
    std::fs::write(out, generated).unwrap();
    println!("cargo:rustc-env=REHOST_WASM_DIR={}", wasm_dir.display());
}

/// (crate name, path) of each crate directly inside the given directories.
fn crates_in(workspace: &Path, dirs: &[&str]) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(workspace.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            // A crate is a plugin when it builds a cdylib (a component).
            if !text.contains("cdylib") {
                continue;
            }
            let name = text
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("name = ")
                        .map(|n| n.trim_matches('"').to_string())
                })
                .unwrap_or_else(|| panic!("{}: no package name", manifest.display()));
            found.push((name, entry.path()));
        }
    }
    found.sort();
    found
}

//! `rehost plugin list|info`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::plugin::catalog::{self, Entry, Origin};

#[derive(Subcommand)]
pub enum Command {
    /// Show stock and installed plugins with their versions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print a plugin's manifest (name or FILE.wasm) without running it.
    Info {
        plugin: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List { json } => {
            let entries = catalog::stock_entries()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!(
                    "{:<20} {:<9} {:<9} {:<7} DESCRIPTION",
                    "NAME", "VERSION", "KIND", "ORIGIN"
                );
                for e in &entries {
                    let m = &e.manifest;
                    println!(
                        "{:<20} {:<9} {:<9} {:<7} {}",
                        m.name,
                        m.version.to_string(),
                        m.kind.to_string(),
                        origin(e),
                        m.description
                    );
                }
            }
        }
        Command::Info { plugin, json } => {
            let entry = catalog::manifest_of(&plugin)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entry)?);
            } else {
                // The manifest as TOML is the most faithful rendering of what it asks.
                print!(
                    "# {} ({})\n{}",
                    plugin,
                    origin(&entry),
                    toml::to_string_pretty(&entry.manifest)?
                );
                if let Err(e) = entry.manifest.check_api() {
                    println!("# warning: {e}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn origin(e: &Entry) -> &str {
    match &e.origin {
        Origin::Stock => "stock",
        Origin::File(_) => "file",
    }
}

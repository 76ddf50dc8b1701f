//! The `rehost` command line: one module per subcommand. Errors are reported here,
//! at the edge, with their whole context chain.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use clap::{Parser, Subcommand};

mod fix;
mod plugin;

#[derive(Parser)]
#[command(
    name = "rehost",
    version,
    about = "Turn a cloud instance's root filesystem into a VM that boots on its own"
)]
pub struct Cli {
    /// More output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run fixers against a guest root that is a plain directory (for fixer development).
    Fix(fix::Args),
    /// List, inspect and manage plugins.
    #[command(subcommand)]
    Plugin(plugin::Command),
}

/// Set by SIGINT/SIGTERM; every long step checks it and unwinds, releasing what it holds.
pub fn cancel_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while cleaning up exits at once.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        flag
    })
    .clone()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Fix(args) => fix::run(args),
        Command::Plugin(cmd) => plugin::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The runtime with the default cache and limits.
fn runtime() -> anyhow::Result<crate::plugin::Runtime> {
    Ok(crate::plugin::Runtime::new(
        crate::plugin::runtime::default_cache_dir(),
        crate::plugin::Limits::default(),
    )?)
}

//! The `rehost` command line: one module per subcommand. Errors are reported here,
//! at the edge, with their whole context chain.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use clap::{Parser, Subcommand};

mod boot_test;
mod check;
mod convert;
mod fetch;
mod fix;
mod inspect;
mod plan;
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
    /// Convert a cloud instance into a disk that boots on its own.
    Convert(convert::Args),
    /// Run only the source step: copy a cloud instance's data into a raw work image.
    Fetch(fetch::Args),
    /// Show what an image is (filesystem, OS, kernels, Xen-isms), read without mounting.
    Inspect(inspect::Args),
    /// Show what the fixers would change (diffs, commands) without writing anything.
    Plan(plan::Args),
    /// Run the seed's troubleshooting checks on a converted disk.
    Check(check::Args),
    /// Boot a disk under qemu and wait for a login prompt.
    BootTest(boot_test::Args),
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
        Command::Convert(args) => convert::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Check(args) => check::run(args),
        Command::BootTest(args) => boot_test::run(args),
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

/// Mounts made from here on live in a private mount namespace and vanish with the
/// process, however it ends. Must run before any thread is started.
fn enter_namespace() -> anyhow::Result<()> {
    crate::guest::namespace::enter_private_mount_namespace()?;
    Ok(())
}

/// The runtime with the default cache and limits.
fn runtime() -> anyhow::Result<crate::plugin::Runtime> {
    Ok(crate::plugin::Runtime::new(
        crate::plugin::runtime::default_cache_dir(),
        crate::plugin::Limits::default(),
    )?)
}

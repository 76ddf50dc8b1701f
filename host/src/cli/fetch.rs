//! `rehost fetch --source NAME [--source-opt KEY=VALUE ...] -o WORK.img`: runs only
//! the source step (STEP 0 of the manual procedure), leaving the instance's data in
//! a raw work image. Nothing is left at WORK.img unless the fetch succeeded.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::plugin::source_host::{self, FetchOptions, SshConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The source plugin: local-file, aws-dd, euca-scp, glance, or FILE.wasm.
    #[arg(long)]
    source: String,
    /// A source setting (repeatable). `secrets.NAME=VALUE` is kept by the host for
    /// `{{secret:NAME}}`, but prefer the environment: the command line is visible
    /// to other users.
    #[arg(long = "source-opt", value_name = "KEY=VALUE")]
    source_opts: Vec<String>,
    /// Let the source reach this host (repeatable), where its manifest allows.
    #[arg(long = "grant-host", value_name = "HOST")]
    grant_hosts: Vec<String>,
    /// Let the source read this device or file (repeatable), where its manifest allows.
    #[arg(long = "grant-device", value_name = "PATH")]
    grant_devices: Vec<String>,
    /// An ssh_config file for ssh and scp instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// The work image to write (raw).
    #[arg(short, long, value_name = "WORK.img")]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let options = FetchOptions {
        config: source_host::table_from_options(&args.source_opts).map_err(anyhow::Error::msg)?,
        grant_hosts: args.grant_hosts,
        grant_devices: args.grant_devices,
        ssh: SshConfig {
            config_file: args.ssh_config,
        },
    };
    let outcome = source_host::fetch(
        &runtime,
        &args.source,
        &options,
        &args.output,
        super::cancel_flag(),
    )?;
    println!(
        "{}: {} bytes from {}\nsha256 {}",
        outcome.work.display(),
        outcome.bytes,
        outcome.report.origin,
        outcome.sha256
    );
    for (key, value) in &outcome.report.metadata {
        println!("{key} = {value}");
    }
    Ok(ExitCode::SUCCESS)
}

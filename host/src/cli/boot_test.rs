//! `rehost boot-test DISK`: boots the output under qemu on the target's hardware and
//! waits for a login prompt; logs in and runs commands when given a password.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::boot_test::{self, BootTestOptions, DiskFormat};
use crate::target::Target;

#[derive(clap::Args)]
pub struct Args {
    disk: PathBuf,
    #[arg(long, value_enum, default_value = "virtualbox")]
    target: Target,
    /// Root password for the login.
    #[arg(long, default_value = "")]
    password: String,
    /// Commands to run after login (repeatable).
    #[arg(long = "run")]
    commands: Vec<String>,
    /// Seconds to wait for each step.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format = DiskFormat::from_path(&args.disk).with_context(|| {
        format!(
            "cannot tell the format of {} from its name",
            args.disk.display()
        )
    })?;
    let mut opts = BootTestOptions::new(&args.disk, format, args.password);
    opts.target = args.target;
    opts.timeout = Duration::from_secs(args.timeout);
    opts.commands = args.commands;
    let report = boot_test::run(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if let Some(s) = report.seconds_to_login {
            println!("login prompt after {s:.0} s");
        }
        for c in &report.commands {
            println!("$ {}  (exit {})\n{}", c.command, c.status, c.output);
        }
        println!("console log: {}", report.console_log.display());
    }
    Ok(ExitCode::SUCCESS)
}

//! Converts a raw disk with rehost's native format writers, for bench/formats.sh.
//!
//! usage: write_format FORMAT SOURCE.raw OUTPUT [THREADS]
//! FORMAT is raw, qcow2, qcow2-compressed, vmdk or vdi; THREADS defaults to all cores.

use std::fs::File;
use std::process::ExitCode;
use std::time::Instant;

use rehost::disk::formats::{write_disk, Format, WriteOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, source, output, rest @ ..] = args.as_slice() else {
        eprintln!("usage: write_format FORMAT SOURCE.raw OUTPUT [THREADS]");
        return ExitCode::from(2);
    };
    match run(format, source, output, rest.first()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("write_format: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(format: &str, source: &str, output: &str, threads: Option<&String>) -> anyhow::Result<()> {
    let format: Format = format.parse()?;
    let threads = threads.map(|t| t.parse()).transpose()?.unwrap_or(0);
    let src = File::open(source)?;
    let size = src.metadata()?.len();
    let out = File::create(output)?;
    let started = Instant::now();
    let opts = WriteOptions {
        threads,
        ..Default::default()
    };
    let written = write_disk(format, &src, size, &out, 0, &opts)?;
    println!(
        "{format} {} bytes in {:.2} s",
        written.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

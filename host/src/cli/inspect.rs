//! `rehost inspect IMAGE [--json]`: what the instance is, read without mounting.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    image: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inspection = crate::guest::inspect::inspect_image(&args.image)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&inspection)?);
        return Ok(ExitCode::SUCCESS);
    }
    let os = &inspection.os;
    let fs = &inspection.filesystem;
    println!("image:       {}", args.image.display());
    println!(
        "layout:      {:?} (filesystem at byte {}, {} bytes)",
        inspection.layout.kind, inspection.layout.offset, inspection.layout.length
    );
    println!(
        "filesystem:  {} uuid={} label={}",
        fs.fstype.as_str(),
        fs.uuid.as_deref().unwrap_or("-"),
        fs.label.as_deref().unwrap_or("-")
    );
    println!(
        "os:          {} ({} {}, {})",
        os.pretty_name.as_deref().unwrap_or("unknown"),
        os.id.as_deref().unwrap_or("?"),
        os.version.as_deref().unwrap_or("?"),
        os.arch.as_deref().unwrap_or("?")
    );
    for k in &inspection.kernels {
        let xen = if k.xen_only { "  [Xen only]" } else { "" };
        println!(
            "kernel:      {} initrd={}{xen}",
            k.image,
            k.initrd.as_deref().unwrap_or("none")
        );
    }
    for b in &inspection.bootloaders {
        println!("bootloader:  {:?} {}", b.kind, b.path);
    }
    for x in &inspection.xen_isms {
        let at = x.line.map(|l| format!(":{l}")).unwrap_or_default();
        println!(
            "xen-ism:     {:?} {}{at}: {}",
            x.kind,
            x.file,
            x.text.trim()
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! A hostile fixer for the sandbox tests. The pipeline file's `attack = "..."`
//! picks the misbehaviour; what it managed to read is returned in the report so the
//! test can prove nothing leaked.

use rehost_sdk::fixer::{FixContext, Fixer, Guest, Report};
use rehost_sdk::{fail, Result};

rehost_sdk::manifest!("../rehost.toml");

struct Hostile;

impl Fixer for Hostile {
    fn fix(guest: &dyn Guest, ctx: &FixContext, report: &mut Report) -> Result<()> {
        let attack = ctx
            .config
            .trim()
            .trim_start_matches("attack")
            .trim_start_matches([' ', '=']);
        match attack.trim_matches('"') {
            "traversal" => report.changed(guest.read_string("../../etc/passwd")?),
            "dotdot" => report.changed(guest.read_string("/etc/../../../etc/passwd")?),
            "symlink-escape" => report.changed(guest.read_string("/etc/hostlink")?),
            "write-outside" => guest.write_string("/etc/shadow", "root::0:0:::::\n")?,
            "write-via-symlink" => guest.write_string("/etc/motd-link", "root::0:0:::::\n")?,
            "fifo" => report.changed(guest.read_string("/etc/fifo")?),
            "initrd-fifo" => report.changed(guest.initrd_modules("/etc/fifo")?.join(",")),
            "initrd-outside" => report.changed(guest.initrd_modules("/boot/initrd.img")?.join(",")),
            "initrd" => report.changed(guest.initrd_modules("/etc/initrd.img")?.join(",")),
            "command" => report.changed(guest.run_checked(&["/bin/rm", "-rf", "/"])?.stdout),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "allowed" => guest.write_string("/etc/motd", "hello from a sandboxed fixer\n")?,
            other => return Err(fail(format!("unknown attack {other:?}"))),
        }
        Ok(())
    }
}

rehost_sdk::export_fixer!(Hostile);

//! Disk-format writers checked against qemu-img: every image must pass `qemu-img check`
//! (where the format has one) and compare identical to its raw source.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rehost::disk::formats::{write_disk, Format, FormatError, TarWriter, WriteOptions, Written};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A sparse raw disk in its own temporary directory (removed on drop).
struct Disk {
    dir: TempDir,
    path: PathBuf,
    size: u64,
}

impl Disk {
    fn new(size: u64) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        File::create(&path).unwrap().set_len(size).unwrap();
        Disk { dir, path, size }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let f = File::options().write(true).open(&self.path).unwrap();
        f.write_all_at(data, offset).unwrap();
    }

    fn output(&self, format: Format) -> PathBuf {
        self.dir
            .path()
            .join(format!("out-{}.{}", format.name(), format.extension()))
    }

    /// Converts to `format` in a file of its own.
    fn convert(&self, format: Format, opts: &WriteOptions) -> (PathBuf, Written) {
        let path = self.output(format);
        // Readable too: digests of non-VMDK images are computed by reading back.
        let out = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let src = File::open(&self.path).unwrap();
        let written = write_disk(format, &src, self.size, &out, 0, opts).unwrap();
        assert_eq!(
            written.bytes,
            out.metadata().unwrap().len(),
            "{format}: reported length"
        );
        (path, written)
    }
}

/// xorshift bytes: incompressible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text-like bytes: compressible, like most of a root filesystem.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            "{i:08x} /usr/lib/x86_64-linux-gnu/libexample.so.{} ok\n",
            i % 17
        ));
        i += 1;
    }
    let mut bytes = s.into_bytes();
    bytes.truncate(len);
    bytes
}

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("running qemu-img (install qemu-utils)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// qemu's driver name and whether it has `qemu-img check`.
fn qemu_driver(format: Format) -> (&'static str, bool) {
    match format {
        Format::Raw => ("raw", false),
        Format::Qcow2 { .. } => ("qcow2", true),
        Format::VmdkStreamOptimized => ("vmdk", true),
        Format::Vdi => ("vdi", true),
    }
}

/// check + compare + virtual size, the independent verdict on one image.
fn verify(disk: &Disk, format: Format, image: &Path) {
    let (driver, has_check) = qemu_driver(format);
    let image = image.to_str().unwrap();
    if has_check {
        let out = qemu_img(&["check", "-f", driver, image]);
        assert!(out.contains("No errors were found"), "{format}: {out}");
    }
    let out = qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        driver,
        disk.path.to_str().unwrap(),
        image,
    ]);
    assert!(out.contains("Images are identical"), "{format}: {out}");

    let info = qemu_img(&["info", "--output=json", "-f", driver, image]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    // (qemu also sees a raw file in whole sectors.)
    assert_eq!(
        info["virtual-size"],
        disk.size.next_multiple_of(512),
        "{format}: virtual size"
    );
    if format == Format::Raw {
        assert_eq!(
            std::fs::metadata(image).unwrap().len(),
            disk.size,
            "raw keeps the exact size"
        );
    }
}

fn verify_all_formats(disk: &Disk) -> Vec<(Format, PathBuf)> {
    Format::ALL
        .into_iter()
        .map(|format| {
            let (path, _) = disk.convert(format, &WriteOptions::default());
            verify(disk, format, &path);
            (format, path)
        })
        .collect()
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Random and compressible pieces, aligned and not, plus a data extent of zeros.
fn scattered_disk(size: u64) -> Disk {
    assert!(size >= 64 * MIB, "the pieces go up to 60 MiB");
    let disk = Disk::new(size);
    disk.write(0, &text(0, 3 * MIB as usize));
    disk.write(5 * MIB + 12345, &noise(1, 1000));
    disk.write(7 * MIB, &vec![0u8; 2 * MIB as usize]);
    disk.write(9 * MIB + 4096, &noise(2, 300_000));
    disk.write(9 * MIB + 400_000, &text(3, 700_000));
    disk.write(20 * MIB - 1, &[0xAB]);
    disk.write(32 * MIB - 700, &text(4, 1400)); // across two 32 MiB VMDK grain tables
    for i in 0..40u64 {
        let data = if i % 3 == 0 {
            noise(i, 70_000)
        } else {
            text(i, 70_000)
        };
        disk.write(40 * MIB + i * 500_000, &data);
    }
    disk.write(size - 512, &noise(5, 512));
    disk
}

#[test]
fn small_disk_with_scattered_data() {
    let disk = scattered_disk(64 * MIB);
    let images = verify_all_formats(&disk);
    let size = |f: Format| {
        std::fs::metadata(&images.iter().find(|(g, _)| *g == f).unwrap().1)
            .unwrap()
            .len()
    };
    assert!(size(Format::Qcow2 { compressed: true }) < size(Format::Qcow2 { compressed: false }));
}

#[test]
fn large_holes_are_neither_read_nor_stored() {
    let disk = Disk::new(3 * GIB);
    disk.write(0, &text(0, MIB as usize));
    disk.write(3 * GIB / 2 + 777, &noise(1, 200_000));
    disk.write(3 * GIB - 4096, &text(2, 4096));
    for (format, path) in verify_all_formats(&disk) {
        assert!(
            allocated(&path) < 8 * MIB,
            "{format}: {} bytes allocated",
            allocated(&path)
        );
    }
}

#[test]
fn sizes_that_are_not_a_multiple_of_the_cluster() {
    // A whole number of sectors, but not of 64 KiB or 1 MiB.
    let disk = scattered_disk(70 * MIB + 7 * 512);
    verify_all_formats(&disk);
    // Not even a whole number of sectors: images round up to one, raw stays exact.
    let disk = Disk::new(3 * MIB + 1000);
    disk.write(0, &text(0, 4096));
    disk.write(3 * MIB + 500, &noise(1, 500));
    verify_all_formats(&disk);
}

#[test]
fn all_zero_disk() {
    let disk = Disk::new(256 * MIB);
    disk.write(10 * MIB, &vec![0u8; 3 * MIB as usize]);
    for (format, path) in verify_all_formats(&disk) {
        assert!(
            allocated(&path) <= 2 * MIB,
            "{format}: {} bytes allocated",
            allocated(&path)
        );
    }
}

/// More than 2 GiB of host clusters (several refcount blocks) over many L1 entries.
#[test]
fn qcow2_with_several_refcount_blocks() {
    let disk = Disk::new(8 * GIB);
    let chunk = text(9, 64 * MIB as usize);
    for i in 0..36u64 {
        // 36 × 64 MiB spread over the disk: 2.25 GiB of data in 14 of 16 L1 ranges.
        disk.write(i * 224 * MIB + 4096, &chunk);
    }
    let format = Format::Qcow2 { compressed: false };
    let (path, written) = disk.convert(format, &WriteOptions::default());
    assert!(
        written.bytes > 2 * GIB + 64 * MIB,
        "{} bytes",
        written.bytes
    );
    verify(&disk, format, &path);
}

#[test]
fn digests_match_the_written_bytes() {
    let disk = scattered_disk(64 * MIB);
    for format in Format::ALL {
        let opts = WriteOptions {
            sha256: true,
            ..Default::default()
        };
        let (path, written) = disk.convert(format, &opts);
        let bytes = std::fs::read(&path).unwrap();
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(written.sha256, Some(expected), "{format}");
    }
    let (_, written) = disk.convert(Format::Vdi, &WriteOptions::default());
    assert_eq!(written.sha256, None);
}

/// The little-endian sector markers that follow the grains.
fn marker(image: &[u8], sector: u64) -> (u64, u32, u32) {
    let m = &image[(sector * 512) as usize..];
    let val = u64::from_le_bytes(m[0..8].try_into().unwrap());
    let size = u32::from_le_bytes(m[8..12].try_into().unwrap());
    let kind = u32::from_le_bytes(m[12..16].try_into().unwrap());
    (val, size, kind)
}

#[test]
fn vmdk_stream_layout() {
    let disk = scattered_disk(64 * MIB);
    let opts = WriteOptions {
        file_name: Some("vm-disk001.vmdk"),
        ..WriteOptions::default()
    };
    let (path, _) = disk.convert(Format::VmdkStreamOptimized, &opts);
    let image = std::fs::read(&path).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    assert_eq!(&image[0..4], b"KDMV");
    assert_eq!(u64_at(56), u64::MAX, "header gdOffset: GD at end");
    let descriptor = String::from_utf8_lossy(&image[512..1024]);
    assert!(
        descriptor.contains("createType=\"streamOptimized\""),
        "{descriptor}"
    );
    // The extent is named after the file, as in VirtualBox's exports.
    let sectors_line = format!("RDONLY {} SPARSE \"vm-disk001.vmdk\"", 64 * MIB / 512);
    assert!(descriptor.contains(&sectors_line), "{descriptor}");

    // Walk the stream from overHead: grains in ascending LBA order, then GT markers
    // with their tables, until the GD marker.
    let sectors = image.len() as u64 / 512;
    let mut sector = u64_at(64);
    let (mut last_lba, mut grains, mut tables) = (None, 0, 0);
    let gd_sector = loop {
        let (val, size, kind) = marker(&image, sector);
        if size > 0 {
            assert!(last_lba < Some(val), "grain LBA {val} after {last_lba:?}");
            last_lba = Some(val);
            grains += 1;
            sector += (12 + size as u64).div_ceil(512);
            continue;
        }
        match kind {
            1 => {
                assert_eq!(val, 4, "GT marker size");
                tables += 1;
                sector += 1 + val;
            }
            2 => break sector + 1,
            other => panic!("unexpected marker type {other} at sector {sector}"),
        }
    };
    assert!(
        grains > 40 && tables == 2,
        "{grains} grains, {tables} tables"
    );
    // GD, footer marker + footer, EOS at the very end.
    assert_eq!(marker(&image, sectors - 3), (1, 0, 3), "footer marker");
    let footer = &image[((sectors - 2) * 512) as usize..];
    assert_eq!(&footer[0..4], b"KDMV");
    assert_eq!(
        u64::from_le_bytes(footer[56..64].try_into().unwrap()),
        gd_sector,
        "footer gdOffset"
    );
    assert_eq!(
        sectors - 3,
        gd_sector + 1,
        "GD (one sector) right before the footer marker"
    );
    assert!(
        image[image.len() - 512..].iter().all(|&b| b == 0),
        "EOS marker"
    );
}

#[test]
fn vmdk_inside_an_ova_is_readable_in_place() {
    let disk = scattered_disk(64 * MIB);
    let ova = disk.dir.path().join("vm.ova");
    let file = File::create(&ova).unwrap();
    let mut tar = TarWriter::new(&file).unwrap();
    let ovf = b"<?xml version=\"1.0\"?>\n<Envelope/>\n";
    tar.append("vm.ovf", ovf, 1_700_000_000).unwrap();
    let offset = tar.begin_member("vm-disk001.vmdk", 1_700_000_000).unwrap();
    let src = File::open(&disk.path).unwrap();
    let opts = WriteOptions {
        sha256: true,
        ..Default::default()
    };
    let written = write_disk(
        Format::VmdkStreamOptimized,
        &src,
        disk.size,
        &file,
        offset,
        &opts,
    )
    .unwrap();
    tar.finish_member(written.bytes).unwrap();
    let digest = hex::encode(written.sha256.unwrap());
    let manifest = format!("SHA256 (vm-disk001.vmdk)= {digest}\n");
    tar.append("vm.mf", manifest.as_bytes(), 1_700_000_000)
        .unwrap();
    let end = tar.finish().unwrap();
    assert_eq!(end, file.metadata().unwrap().len());
    assert_eq!(end % 512, 0);

    let listing = Command::new("tar").arg("tvf").arg(&ova).output().unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    let members: Vec<(&str, &str)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[5], f[2])
        })
        .collect();
    let disk_size = written.bytes.to_string();
    assert_eq!(
        members,
        [
            ("vm.ovf", &*ovf.len().to_string()),
            ("vm-disk001.vmdk", &*disk_size),
            ("vm.mf", &*manifest.len().to_string())
        ],
        "{listing}"
    );
    assert!(listing.starts_with("-rw-r--r--"), "{listing}");

    let extracted = Command::new("tar")
        .arg("xOf")
        .arg(&ova)
        .arg("vm-disk001.vmdk")
        .output()
        .unwrap();
    assert_eq!(hex::encode(Sha256::digest(&extracted.stdout)), digest);

    let json = format!(
        r#"json:{{"driver":"vmdk","file":{{"driver":"raw","offset":{offset},"size":{},"file":{{"driver":"file","filename":"{}"}}}}}}"#,
        written.bytes,
        ova.display()
    );
    let out = qemu_img(&["compare", "-f", "raw", disk.path.to_str().unwrap(), &json]);
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn tar_sizes_past_8_gib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tar");
    let file = File::create(&path).unwrap();
    let mut tar = TarWriter::new(&file).unwrap();
    let offset = tar.begin_member("sparse.img", 0).unwrap();
    let size = 9 * GIB + 5;
    file.set_len(offset + size).unwrap();
    tar.finish_member(size).unwrap();
    tar.finish().unwrap();
    let listing = Command::new("tar").arg("tvf").arg(&path).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(&size.to_string()), "{listing}");

    assert!(matches!(
        tar_name_error(&"x".repeat(101)),
        FormatError::NameTooLong(_)
    ));
    assert!(matches!(
        tar_name_error("disk\u{e9}.vmdk"),
        FormatError::NameNotAscii(_)
    ));
}

fn tar_name_error(name: &str) -> FormatError {
    let file = tempfile::tempfile().unwrap();
    TarWriter::new(&file)
        .unwrap()
        .append(name, b"", 0)
        .unwrap_err()
}

#[test]
fn progress_reaches_the_total() {
    let disk = scattered_disk(64 * MIB);
    let last = (AtomicU64::new(0), AtomicU64::new(1));
    let progress = |done: u64, total: u64| {
        last.0.store(done, Ordering::Relaxed);
        last.1.store(total, Ordering::Relaxed);
    };
    for format in [Format::Raw, Format::VmdkStreamOptimized] {
        let opts = WriteOptions {
            progress: Some(&progress),
            ..Default::default()
        };
        disk.convert(format, &opts);
        let (done, total) = (
            last.0.load(Ordering::Relaxed),
            last.1.load(Ordering::Relaxed),
        );
        assert_eq!(done, total, "{format}");
        assert!(
            (6 * MIB..64 * MIB).contains(&total),
            "{format}: total {total} counts holes"
        );
    }
}

#[test]
fn cancellation_stops_the_conversion() {
    let disk = Disk::new(512 * MIB);
    disk.write(0, &text(0, 256 * MIB as usize));
    let src = File::open(&disk.path).unwrap();
    for format in Format::ALL {
        // Raised before the start: nothing is converted.
        let cancel = AtomicBool::new(true);
        let out = File::create(disk.output(format)).unwrap();
        let opts = WriteOptions {
            cancel: Some(&cancel),
            ..Default::default()
        };
        let err = write_disk(format, &src, disk.size, &out, 0, &opts).unwrap_err();
        assert!(matches!(err, FormatError::Cancelled), "{format}: {err}");

        // Raised during the conversion (as a Ctrl-C handler would): it stops early.
        let cancel = AtomicBool::new(false);
        let seen = AtomicU64::new(0);
        let progress = |done: u64, _total: u64| {
            seen.store(done, Ordering::Relaxed);
            if done >= 8 * MIB {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let opts = WriteOptions {
            cancel: Some(&cancel),
            progress: Some(&progress),
            ..Default::default()
        };
        let err = write_disk(format, &src, disk.size, &out, 0, &opts).unwrap_err();
        assert!(matches!(err, FormatError::Cancelled), "{format}: {err}");
        assert!(
            seen.load(Ordering::Relaxed) < 64 * MIB,
            "{format}: went on after the cancel"
        );
    }
}

#[test]
fn format_names() {
    for format in Format::ALL {
        assert_eq!(format.name().parse::<Format>().unwrap(), format);
    }
    assert_eq!(
        "VMDK".parse::<Format>().unwrap(),
        Format::VmdkStreamOptimized
    );
    assert!(matches!(
        "qed".parse::<Format>(),
        Err(FormatError::UnknownFormat(_))
    ));
}

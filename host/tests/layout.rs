//! The layout stage's disk code against the real tools: mke2fs builds the
//! instance filesystem, sfdisk, e2fsck, tune2fs and qemu-img check what the
//! sparse copy, resize and MBR produce. Everything lives in a TempDir.

mod common;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use rehost::disk::copy::{copy_file_sparse, shift_into_disk, Control, CopyError, RangeCopy};
use rehost::disk::ext::{
    fsck, grow, read_superblock, tune2fs_list, ExtError, FsLocation, FsType, FsckMode, FsckOutcome,
};
use rehost::disk::mbr::{disk_bytes, Mbr, PartitionKind, PARTITION_OFFSET};

use common::run;

const MIB: u64 = 1 << 20;

/// Deterministic incompressible-looking bytes.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An ext4 image of `size` (e.g. "1G") holding a few files: mostly holes.
fn make_ext4(dir: &Path, name: &str, size: &str, extra_mke2fs: &[&str]) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::write(tree.join("etc/hostname"), "instance\n").unwrap();
    std::fs::write(tree.join("boot/blob"), pseudo_random(3 << 20, 7)).unwrap();
    let image = dir.join(name);
    let mut args = vec!["-q", "-t", "ext4", "-L", "rehost-root", "-F"];
    args.extend_from_slice(extra_mke2fs);
    args.extend_from_slice(&["-d", tree.to_str().unwrap(), image.to_str().unwrap(), size]);
    run("mke2fs", &args);
    image
}

/// sha256sum rather than the sha2 crate: a debug build hashes 1 GiB far too slowly.
fn sha256(path: &Path) -> String {
    run("sha256sum", &[path.to_str().unwrap()])[..64].to_owned()
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// The filesystem in partition 1 of `disk` is byte-identical to `bare`
/// (qemu-img as the independent reader; it skips holes on both sides).
fn assert_partition_matches(disk: &Path, fs_bytes: u64, bare: &Path) {
    let partition = format!(
        "driver=raw,offset={PARTITION_OFFSET},size={fs_bytes},file.filename={}",
        disk.display()
    );
    let whole = format!("driver=raw,file.filename={}", bare.display());
    let out = run("qemu-img", &["compare", "--image-opts", &partition, &whole]);
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn mbr_matches_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    // 300 MiB keeps real CHS values; 10 GiB ends past cylinder 1023.
    for sectors in [614_400u32, 20_971_520] {
        let path = dir.path().join(format!("sfdisk-{sectors}.raw"));
        File::create(&path)
            .unwrap()
            .set_len(disk_bytes(u64::from(sectors) * 512))
            .unwrap();
        let script = format!(
            "label: dos\nlabel-id: 0x1234abcd\nstart=2048, size={sectors}, type=83, bootable\n"
        );
        let mut child = Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());

        let mut theirs = [0u8; 512];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut theirs, 0)
            .unwrap();
        let ours = Mbr::single_linux_partition(0x1234_abcd, u64::from(sectors) * 512).unwrap();
        assert_eq!(ours.to_bytes(), theirs, "{sectors} sectors");

        let parsed = Mbr::read(&File::open(&path).unwrap(), &path)
            .unwrap()
            .unwrap();
        let entry = parsed.partitions[0].unwrap();
        assert!(entry.bootable);
        assert_eq!(entry.kind(), PartitionKind::Linux);
        assert_eq!((entry.start_lba, entry.sectors), (2048, sectors));
        assert_eq!(parsed.partitions[1..], [None, None, None]);
        assert_eq!(parsed.disk_signature, 0x1234_abcd);
    }
}

#[test]
fn bare_image_to_partitioned_disk() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_ext4(dir.path(), "instance.ext4", "1G", &[]);
    let source_digest = sha256(&source);
    let source_allocated = allocated(&source);

    // Inspection: the superblock as tune2fs reports it.
    let sb = read_superblock(&FsLocation::bare(&source)).unwrap();
    let tune = tune2fs_list(&FsLocation::bare(&source)).unwrap();
    assert_eq!(sb.uuid.to_string(), tune["Filesystem UUID"]);
    assert_eq!(sb.label, tune["Filesystem volume name"]);
    assert_eq!(sb.blocks_count.to_string(), tune["Block count"]);
    assert_eq!(sb.block_size.to_string(), tune["Block size"]);
    assert_eq!(sb.free_blocks.to_string(), tune["Free blocks"]);
    let mut names = sb.feature_names();
    let mut theirs: Vec<String> = tune["Filesystem features"]
        .split_whitespace()
        .map(String::from)
        .collect();
    names.sort();
    theirs.sort();
    assert_eq!(names, theirs);
    assert_eq!(sb.fs_type(), FsType::Ext4);
    assert!(sb.is_clean());
    assert_eq!(sb.fs_bytes(), 1 << 30);

    // Work copy: sparse, with progress.
    let work = dir.path().join("work.ext4");
    let last = std::sync::Mutex::new((0, 0));
    let report = |done, total| *last.lock().unwrap() = (done, total);
    let copied = copy_file_sparse(
        &source,
        &work,
        &Control {
            progress: Some(&report),
            cancel: None,
        },
    )
    .unwrap();
    assert_eq!(*last.lock().unwrap(), (copied, copied));
    assert!(copied < 100 * MIB, "holes were copied: {copied}");
    assert!(allocated(&work) <= source_allocated + MIB);

    // Grow the bare copy (never through ?offset=), check before and after.
    assert_eq!(
        fsck(&FsLocation::bare(&work), FsckMode::Repair)
            .unwrap()
            .outcome,
        FsckOutcome::Clean
    );
    let fs_bytes = grow(&work, 1536 * MIB).unwrap();
    assert_eq!(fs_bytes, 1536 * MIB);
    assert_eq!(std::fs::metadata(&work).unwrap().len(), fs_bytes);
    let grown = read_superblock(&FsLocation::bare(&work)).unwrap();
    assert_eq!(grown.fs_bytes(), fs_bytes);
    assert_eq!(grown.uuid, sb.uuid);
    assert_eq!(
        fsck(&FsLocation::bare(&work), FsckMode::CheckOnly)
            .unwrap()
            .outcome,
        FsckOutcome::Clean
    );

    // The disk: MBR, then the filesystem at 1 MiB.
    let disk_path = dir.path().join("disk.raw");
    let disk = File::create_new(&disk_path).unwrap();
    disk.write_all_at(
        &Mbr::single_linux_partition(0xfeed_f00d, fs_bytes)
            .unwrap()
            .to_bytes(),
        0,
    )
    .unwrap();
    disk.set_len(disk_bytes(fs_bytes)).unwrap();
    let work_file = File::open(&work).unwrap();
    RangeCopy {
        src: &work_file,
        src_path: &work,
        src_offset: 0,
        length: fs_bytes,
        dst: &disk,
        dst_path: &disk_path,
        dst_offset: PARTITION_OFFSET,
    }
    .run(&Control::default())
    .unwrap();
    drop(disk);

    let dump = run("sfdisk", &["--dump", disk_path.to_str().unwrap()]);
    let expected = format!(
        "start=        2048, size=     {}, type=83, bootable",
        fs_bytes / 512
    );
    assert!(dump.contains(&expected), "{dump}");
    assert!(dump.contains("label-id: 0xfeedf00d"), "{dump}");
    run(
        "e2fsck",
        &[
            "-fn",
            &format!("{}?offset={PARTITION_OFFSET}", disk_path.display()),
        ],
    );
    assert_partition_matches(&disk_path, fs_bytes, &work);
    assert!(allocated(&disk_path) <= allocated(&work) + MIB);
    assert!(allocated(&disk_path) < 100 * MIB);

    // Inspection of a partitioned image: the table leads to the filesystem.
    let table = Mbr::read(&File::open(&disk_path).unwrap(), &disk_path)
        .unwrap()
        .unwrap();
    let root = table.partitions[0].unwrap();
    let in_disk = FsLocation::partition(&disk_path, root.byte_offset(), root.byte_len());
    assert_eq!(read_superblock(&in_disk).unwrap(), grown);
    assert_eq!(
        fsck(&in_disk, FsckMode::CheckOnly).unwrap().outcome,
        FsckOutcome::Clean
    );
    assert_eq!(
        tune2fs_list(&in_disk).unwrap()["Filesystem UUID"],
        sb.uuid.to_string()
    );

    // A partition of a partitioned source copies out as a bare image.
    let extracted = dir.path().join("extracted.ext4");
    let disk_file = File::open(&disk_path).unwrap();
    let extracted_file = File::create_new(&extracted).unwrap();
    RangeCopy {
        src: &disk_file,
        src_path: &disk_path,
        src_offset: root.byte_offset(),
        length: root.byte_len(),
        dst: &extracted_file,
        dst_path: &extracted,
        dst_offset: 0,
    }
    .run(&Control::default())
    .unwrap();
    let out = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            extracted.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    assert!(out.contains("Images are identical"), "{out}");

    assert_eq!(sha256(&source), source_digest, "the source was modified");
}

#[test]
fn superblock_errors() {
    let dir = tempfile::tempdir().unwrap();

    let zeros = dir.path().join("zeros.img");
    File::create(&zeros).unwrap().set_len(8 * MIB).unwrap();
    assert!(matches!(
        read_superblock(&FsLocation::bare(&zeros)),
        Err(ExtError::NotExt(_))
    ));
    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, b"not a filesystem").unwrap();
    assert!(matches!(
        read_superblock(&FsLocation::bare(&tiny)),
        Err(ExtError::NotExt(_))
    ));

    // Cut short, as an interrupted download would leave it.
    let truncated = make_ext4(dir.path(), "truncated.ext4", "64M", &[]);
    File::options()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(40 * MIB)
        .unwrap();
    let err = read_superblock(&FsLocation::bare(&truncated)).unwrap_err();
    assert!(
        matches!(err, ExtError::Truncated { fs_bytes, available, .. }
            if fs_bytes == 64 * MIB && available == 40 * MIB),
        "{err}"
    );
    // The same filesystem seen as a too-short partition.
    let full = make_ext4(dir.path(), "full.ext4", "64M", &[]);
    let err = read_superblock(&FsLocation::partition(&full, 0, 32 * MIB)).unwrap_err();
    assert!(matches!(err, ExtError::Truncated { .. }), "{err}");

    // metadata_csum catches any changed byte.
    let flipped = make_ext4(dir.path(), "flipped.ext4", "64M", &[]);
    let f = File::options().write(true).open(&flipped).unwrap();
    f.write_all_at(b"X", 1024 + 0x90).unwrap();
    let err = read_superblock(&FsLocation::bare(&flipped)).unwrap_err();
    assert!(
        matches!(&err, ExtError::Corrupt { reason, .. } if reason.contains("checksum")),
        "{err}"
    );

    // Without checksums, impossible geometry is still caught.
    let ext2 = dir.path().join("old.ext2");
    run(
        "mke2fs",
        &["-q", "-t", "ext2", "-F", ext2.to_str().unwrap(), "16M"],
    );
    assert_eq!(
        read_superblock(&FsLocation::bare(&ext2)).unwrap().fs_type(),
        FsType::Ext2
    );
    let f = File::options().write(true).open(&ext2).unwrap();
    f.write_all_at(&[30], 1024 + 0x18).unwrap();
    let err = read_superblock(&FsLocation::bare(&ext2)).unwrap_err();
    assert!(
        matches!(&err, ExtError::Corrupt { reason, .. } if reason.contains("block size")),
        "{err}"
    );

    // As the error says, e2fsck repairs it from a backup superblock.
    let report = fsck(&FsLocation::bare(&ext2), FsckMode::Repair).unwrap();
    assert_ne!(report.outcome, FsckOutcome::Clean, "{}", report.output);
    read_superblock(&FsLocation::bare(&ext2)).unwrap();

    let ext3 = dir.path().join("old.ext3");
    run(
        "mke2fs",
        &["-q", "-t", "ext3", "-F", ext3.to_str().unwrap(), "16M"],
    );
    assert_eq!(
        read_superblock(&FsLocation::bare(&ext3)).unwrap().fs_type(),
        FsType::Ext3
    );
}

#[test]
fn fsck_outcomes_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let image = make_ext4(dir.path(), "damaged.ext4", "64M", &[]);
    run(
        "debugfs",
        &[
            "-w",
            "-R",
            "set_inode_field /etc/hostname links_count 7",
            image.to_str().unwrap(),
        ],
    );
    let location = FsLocation::bare(&image);
    let err = fsck(&location, FsckMode::CheckOnly).unwrap_err();
    assert!(
        matches!(&err, ExtError::Fsck { code: 4, output, .. } if output.contains("count")),
        "{err}"
    );
    let report = fsck(&location, FsckMode::Repair).unwrap();
    assert_eq!(report.outcome, FsckOutcome::Corrected, "{}", report.output);
    assert_eq!(
        fsck(&location, FsckMode::CheckOnly).unwrap().outcome,
        FsckOutcome::Clean
    );

    let missing = FsLocation::bare(dir.path().join("missing.ext4"));
    assert!(matches!(
        fsck(&missing, FsckMode::CheckOnly),
        Err(ExtError::Fsck { code: 8, .. })
    ));
    assert!(matches!(
        tune2fs_list(&missing),
        Err(ExtError::ToolFailed {
            tool: "tune2fs",
            ..
        })
    ));
}

#[test]
fn grow_refuses_shrinking_and_odd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let image = make_ext4(dir.path(), "small.ext4", "64M", &["-b", "4096"]);
    for size in [32 * MIB, 64 * MIB + 512] {
        assert!(matches!(
            grow(&image, size),
            Err(ExtError::BadNewSize { .. })
        ));
    }
    assert_eq!(grow(&image, 64 * MIB).unwrap(), 64 * MIB);
    let odd = dir.path().join("we?ird.ext4");
    std::fs::copy(&image, &odd).unwrap();
    assert!(matches!(
        grow(&odd, 128 * MIB),
        Err(ExtError::UnusablePath { .. })
    ));
}

#[test]
fn copy_cancels_between_steps_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    // The journal and the files are more than one copy step of data.
    let source = make_ext4(dir.path(), "instance.ext4", "256M", &[]);
    let digest = sha256(&source);
    let cancel = AtomicBool::new(false);
    let steps = std::sync::atomic::AtomicU32::new(0);
    let report = |_, _| {
        steps.fetch_add(1, Ordering::SeqCst);
        cancel.store(true, Ordering::SeqCst);
    };
    let target = dir.path().join("work.ext4");
    let err = copy_file_sparse(
        &source,
        &target,
        &Control {
            progress: Some(&report),
            cancel: Some(&cancel),
        },
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::Cancelled), "{err}");
    assert_eq!(steps.load(Ordering::SeqCst), 1);
    assert!(!target.exists());
    assert_eq!(sha256(&source), digest);

    // An existing destination is never overwritten.
    std::fs::write(&target, b"keep me").unwrap();
    assert!(matches!(
        copy_file_sparse(&source, &target, &Control::default()),
        Err(CopyError::Io { .. })
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
}

/// A tmpfs mounted for one test (FALLOC_FL_INSERT_RANGE is not supported there).
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bare_filesystem_shifts_into_a_disk_with_or_without_insert_range() {
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs(dir.path().join("tmpfs"));
    std::fs::create_dir(&tmpfs.0).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=256M",
            "tmpfs",
            tmpfs.0.to_str().unwrap(),
        ],
    );

    // dir is on the machine's ext4 (extents shifted in place); tmpfs falls back to a copy.
    for (place, in_place) in [(dir.path(), true), (tmpfs.0.as_path(), false)] {
        let image = make_ext4(place, "root.fs", "64M", &[]);
        let inode = std::fs::metadata(&image).unwrap().ino();
        let reference = place.join("reference.fs");
        std::fs::copy(&image, &reference).unwrap();
        let fs_bytes = std::fs::metadata(&image).unwrap().len();
        let disk = place.join("disk.raw");
        let disk_len = disk_bytes(fs_bytes);
        shift_into_disk(
            &image,
            &disk,
            PARTITION_OFFSET,
            disk_len,
            &Control::default(),
        )
        .unwrap();

        assert!(
            !image.exists(),
            "{}: the bare file is left",
            place.display()
        );
        // Shifted in place keeps the file (its inode); the fallback made a new one.
        assert_eq!(std::fs::metadata(&disk).unwrap().ino() == inode, in_place);
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), disk_len);
        assert_partition_matches(&disk, fs_bytes, &reference);
        // The gap before the partition is a hole, and the filesystem's holes stay holes.
        let head = File::open(&disk).unwrap();
        let mut gap = vec![1u8; PARTITION_OFFSET as usize];
        head.read_exact_at(&mut gap, 0).unwrap();
        assert!(gap.iter().all(|&b| b == 0));
        assert!(
            allocated(&disk) < fs_bytes / 2,
            "{} bytes allocated",
            allocated(&disk)
        );
    }

    // An existing disk is never overwritten, and the bare file stays where it was.
    let image = make_ext4(dir.path(), "again.fs", "16M", &[]);
    let taken = dir.path().join("taken.raw");
    std::fs::write(&taken, b"keep me").unwrap();
    assert!(shift_into_disk(
        &image,
        &taken,
        PARTITION_OFFSET,
        32 << 20,
        &Control::default()
    )
    .is_err());
    assert_eq!(std::fs::read(&taken).unwrap(), b"keep me");
    assert!(image.exists());
}

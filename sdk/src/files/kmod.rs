//! Kernel module names as /lib/modules/VERSION/modules.dep and modules.builtin
//! list them, so a fixer can tell a driver the kernel loads from one it has built in.

use std::collections::BTreeSet;

/// The module name of a module file or path: `kernel/drivers/block/virtio-blk.ko.xz`
/// → `virtio_blk`. `-` and `_` are the same to modprobe, so names keep `_`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| normalise(stem))
}

/// A module name as given by a user or a config file, in modprobe's spelling.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// Module names of a modules.dep (`kernel/…/x.ko: deps…`) or modules.builtin
/// (`kernel/…/x.ko`) file: the first path on each line.
pub fn listed_modules(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.split(':').next())
        .filter_map(|path| module_name(path.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_directory_suffix_and_dashes() {
        assert_eq!(
            module_name("kernel/drivers/block/virtio-blk.ko.xz").as_deref(),
            Some("virtio_blk")
        );
        assert_eq!(module_name("ahci.ko").as_deref(), Some("ahci"));
        assert_eq!(module_name("kernel/drivers/ata/README"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn modules_dep_and_builtin_lines() {
        let dep = "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n\
                   kernel/drivers/virtio/virtio_pci.ko.zst:\n\n";
        assert_eq!(
            listed_modules(dep).into_iter().collect::<Vec<_>>(),
            ["virtio_blk", "virtio_pci"]
        );
        let builtin = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n";
        assert!(listed_modules(builtin).contains("ext4"));
    }
}

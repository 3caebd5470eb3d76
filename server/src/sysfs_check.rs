//! Whether glommio can describe the block devices under the shards' logs.
//!
//! The first direct-I/O file glommio opens on a device makes it read that
//! device's queue properties from `/sys/dev/block/MAJOR:0/` (block sizes,
//! the write cache, the `slaves` of an md array), and glommio 0.9 unwraps
//! every one of those reads: in a container with `/sys` masked or read-only
//! in part, the shard opening its first log segment would panic, and the
//! release build aborts the whole process with a message about a file in
//! `/sys`. So start-up reads the same files first and, where one of them
//! would make glommio panic, refuses to start with the path and the fix. A
//! device with no entry at all (tmpfs, overlayfs) is fine: glommio treats it
//! as memory.

use std::path::{Path, PathBuf};

/// The integer files glommio reads under `queue/`.
const QUEUE_INTEGERS: [&str; 7] = [
    "rotational",
    "minimum_io_size",
    "optimal_io_size",
    "logical_block_size",
    "physical_block_size",
    "max_sectors_kb",
    "max_segment_size",
];

/// The major number of the device holding `path` (or its nearest existing
/// parent: the data directory may not exist yet).
pub fn device_major(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut at = Some(path);
    while let Some(dir) = at {
        if let Ok(meta) = std::fs::metadata(dir) {
            let dev = meta.dev();
            // glibc's gnu_dev_major.
            return Some(((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff));
        }
        at = dir.parent();
    }
    None
}

/// Why glommio could not read the properties of the devices holding `dirs`
/// (each shard's log directory: one may be a mount of its own), one problem
/// per device.
pub fn judge_dirs(sys: &Path, dirs: impl Iterator<Item = PathBuf>) -> Vec<String> {
    let mut majors: Vec<u64> = dirs.filter_map(|dir| device_major(&dir)).collect();
    majors.sort_unstable();
    majors.dedup();
    majors.into_iter().filter_map(|major| judge(sys, major)).collect()
}

/// Why glommio could not read device `major`'s properties under `sys`
/// (normally `/sys`), or `None` if it can (or has nothing to read).
pub fn judge(sys: &Path, major: u64) -> Option<String> {
    let link = sys.join(format!("dev/block/{major}:0"));
    let dir = match std::fs::canonicalize(&link) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(problem(&link, &e.to_string())),
    };
    let queue = dir.join("queue");
    for name in QUEUE_INTEGERS {
        let path = queue.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim_matches('\n').parse::<isize>().is_ok() => {}
            Ok(text) => return Some(problem(&path, &format!("not an integer: {:?}", text.trim_end()))),
            Err(e) => return Some(problem(&path, &e.to_string())),
        }
    }
    let cache = queue.join("write_cache");
    match std::fs::read_to_string(&cache) {
        Ok(text) if matches!(text.trim_matches('\n'), "write back" | "write through") => {}
        Ok(text) => return Some(problem(&cache, &format!("unexpected value {:?}", text.trim_end()))),
        Err(e) => return Some(problem(&cache, &e.to_string())),
    }
    let slaves: PathBuf = dir.join("slaves");
    let listed = std::fs::read_dir(&slaves).and_then(|mut entries| entries.try_for_each(|e| e.map(|_| ())));
    if let Err(e) = listed {
        return Some(problem(&slaves, &e.to_string()));
    }
    None
}

fn problem(path: &Path, why: &str) -> String {
    format!(
        "{}: {why}; the direct I/O of the log reads this block device's properties there \
         (make /sys readable in the container, or run with --durability none)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys` with device 8's entry as the kernel lays it out.
    fn fake_sys(name: &str) -> PathBuf {
        let sys = std::env::temp_dir().join(format!("hongbao-sysfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let device = sys.join("devices/pci0000:00/virtio1/block/vda");
        std::fs::create_dir_all(device.join("queue")).unwrap();
        std::fs::create_dir_all(device.join("slaves")).unwrap();
        for (i, name) in QUEUE_INTEGERS.iter().enumerate() {
            std::fs::write(device.join("queue").join(name), format!("{}\n", 512 * i)).unwrap();
        }
        std::fs::write(device.join("queue/write_cache"), "write back\n").unwrap();
        std::fs::create_dir_all(sys.join("dev/block")).unwrap();
        std::os::unix::fs::symlink(&device, sys.join("dev/block/8:0")).unwrap();
        sys
    }

    #[test]
    fn a_readable_device_or_none_at_all_passes() {
        let sys = fake_sys("ok");
        assert_eq!(judge(&sys, 8), None);
        assert_eq!(judge(&sys, 0), None, "no entry: glommio takes it for memory");
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn what_would_make_glommio_panic_is_named() {
        let sys = fake_sys("bad");
        let queue = sys.join("devices/pci0000:00/virtio1/block/vda/queue");
        std::fs::remove_file(queue.join("max_segment_size")).unwrap();
        let why = judge(&sys, 8).unwrap();
        assert!(why.contains("queue/max_segment_size") && why.contains("--durability none"), "{why}");
        std::fs::write(queue.join("max_segment_size"), "lots\n").unwrap();
        assert!(judge(&sys, 8).unwrap().contains("not an integer"));
        std::fs::write(queue.join("max_segment_size"), "65536\n").unwrap();
        std::fs::write(queue.join("write_cache"), "write around\n").unwrap();
        assert!(judge(&sys, 8).unwrap().contains("write_cache"));
        std::fs::write(queue.join("write_cache"), "write through\n").unwrap();
        assert_eq!(judge(&sys, 8), None);
        std::fs::remove_dir(sys.join("devices/pci0000:00/virtio1/block/vda/slaves")).unwrap();
        assert!(judge(&sys, 8).unwrap().contains("slaves"));
        std::fs::remove_dir_all(&sys).unwrap();
    }

    /// Every shard's directory is looked at, and a device shared by several
    /// is named once.
    #[test]
    fn each_device_under_the_shards_is_judged_once() {
        let sys = fake_sys("dirs");
        let here = std::env::temp_dir();
        let major = device_major(&here).unwrap();
        std::fs::rename(sys.join("dev/block/8:0"), sys.join(format!("dev/block/{major}:0"))).unwrap();
        let dirs = || (0..3).map(|shard| here.join(format!("hongbao-sysfs-dirs/shard-{shard}")));
        assert!(judge_dirs(&sys, dirs()).is_empty());
        std::fs::remove_file(sys.join("devices/pci0000:00/virtio1/block/vda/queue/rotational")).unwrap();
        let problems = judge_dirs(&sys, dirs());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("queue/rotational"), "{problems:?}");
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn the_device_of_a_path_not_made_yet_is_its_parents() {
        let missing = std::env::temp_dir().join("hongbao-no-such-dir/shard-0");
        assert_eq!(device_major(&missing), device_major(&std::env::temp_dir()));
        assert!(device_major(Path::new("/")).is_some());
    }
}

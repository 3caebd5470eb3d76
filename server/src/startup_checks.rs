//! What the server checks about its host before it starts: the limits and
//! kernel features a thread-per-core io_uring server needs.
//!
//! A problem the server cannot run with stops start-up with a message naming
//! the fix; one it can run with (more slowly, or with fewer connections) is a
//! warning. Soft limits below their hard limits are raised first, as Redis
//! and most servers do, so the common case needs no operator at all.
//! `tuning/check` reports the same things, and more, for the whole host.

use std::path::Path;

use crate::config::ServerConfig;

/// Memory glommio locks per executor for its io_uring buffers (its default).
pub const IO_MEMORY_PER_SHARD: u64 = 10 << 20;
/// File descriptors a shard needs besides its connections: listeners, rings,
/// eventfds, log segments, snapshots.
pub const FDS_PER_SHARD: u64 = 64;

/// The outcome of the checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Problems the server can run with; printed at start-up.
    pub warnings: Vec<String>,
    /// Problems it cannot run with.
    pub errors: Vec<String>,
    /// Connections per shard the open-files limit leaves room for, where that
    /// is fewer than `--max-connections`: the server admits no more, so that
    /// connections can never take the descriptors its log needs (a segment
    /// or snapshot that cannot be opened fails the log, and the shard then
    /// refuses every change until restarted).
    pub connections_max: Option<usize>,
}

/// A resource limit, soft and hard (`None` = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The limit in force.
    pub soft: Option<u64>,
    /// The most the soft limit may be raised to without privilege.
    pub hard: Option<u64>,
}

/// Checks `limits` (open files, locked memory) and `io_uring_disabled` (the
/// sysctl's value, if the kernel has it) against `config`.
pub fn judge(
    config: &ServerConfig,
    nofile: Limit,
    memlock: Limit,
    io_uring_disabled: Option<u8>,
) -> Findings {
    let mut found = Findings::default();
    let shards = config.shards.len() as u64;
    match io_uring_disabled {
        Some(2) => found.errors.push(
            "io_uring is disabled (kernel.io_uring_disabled = 2); hongbao needs it: run \
             `sysctl -w kernel.io_uring_disabled=0` (see tuning/check)"
                .into(),
        ),
        Some(1) => found.warnings.push(
            "io_uring is limited to the io_uring_group (kernel.io_uring_disabled = 1); if start-up fails, \
             run `sysctl -w kernel.io_uring_disabled=0` or add this user to that group"
                .into(),
        ),
        _ => {}
    }
    // The shards' own descriptors and room for one connection each: with
    // less, the server would answer every client busy.
    let fds_needed_min = shards * (FDS_PER_SHARD + 1);
    let fds_wanted = shards * FDS_PER_SHARD + shards * config.max_connections as u64;
    if let Some(soft) = nofile.soft {
        if soft < fds_needed_min {
            found.errors.push(format!(
                "the open-files limit is {soft}, below the {fds_needed_min} that {shards} shards need to start \
                 and take a connection each; \
                 raise it (`ulimit -n 1048576`, or LimitNOFILE= in the systemd unit)"
            ));
        } else if soft < fds_wanted {
            let connections = (soft - shards * FDS_PER_SHARD) / shards;
            found.warnings.push(format!(
                "the open-files limit is {soft}: room for {connections} connections per shard, not the {} of \
                 --max-connections, so each shard admits {connections} (busy past them); raise it \
                 (`ulimit -n 1048576`, or LimitNOFILE=)",
                config.max_connections
            ));
            found.connections_max = Some(usize::try_from(connections).unwrap_or(usize::MAX));
        }
    }
    let memlock_wanted = shards * IO_MEMORY_PER_SHARD;
    if let Some(soft) = memlock.soft {
        if soft < memlock_wanted {
            found.warnings.push(format!(
                "the locked-memory limit is {} KiB, below the {} KiB io_uring's registered buffers want for {shards} \
                 shards; the server runs without them, a little slower. Raise it (`ulimit -l unlimited`, or \
                 LimitMEMLOCK=infinity)",
                soft / 1024,
                memlock_wanted / 1024
            ));
        }
    }
    found
}

/// Adds an error if the shards' `--prefault-mib` together exceed the memory
/// available (bytes; `None`: unknown): the host's `MemAvailable`, or the
/// room left under this process's cgroup memory limit if that is less. A
/// reservation the host cannot hold would push the server into swap or the
/// OOM killer at start instead of failing with a message.
pub fn judge_memory(config: &ServerConfig, mem_available: Option<u64>, found: &mut Findings) {
    let shards = config.shards.len() as u64;
    let wanted = shards.saturating_mul(config.prefault_bytes);
    if let Some(available) = mem_available {
        if wanted > available {
            found.errors.push(format!(
                "--prefault-mib {} on {shards} shards is {} MiB, more than the {} MiB available here \
                 (MemAvailable in /proc/meminfo, or the cgroup's memory limit); lower it",
                config.prefault_bytes >> 20,
                wanted >> 20,
                available >> 20
            ));
        }
    }
}

/// The oldest Linux with everything the socket ring uses: provided-buffer
/// rings (5.19) and multishot receive (6.0).
pub const KERNEL_MIN: (u32, u32) = (6, 0);

/// Adds a warning if `release` (`/proc/sys/kernel/osrelease`, "6.1.0-13")
/// is older than [`KERNEL_MIN`]. A warning, not an error: distributions
/// backport io_uring, and a ring that cannot be built stops the start with
/// its own reason anyway; but on 5.19 every receive would be refused, and
/// every connection closed at its first read.
pub fn judge_kernel(release: &str, found: &mut Findings) {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let (Some(Ok(major)), Some(Ok(minor))) =
        (numbers.next().map(str::parse::<u32>), numbers.next().map(str::parse::<u32>))
    else {
        return;
    };
    if (major, minor) < KERNEL_MIN {
        found.warnings.push(format!(
            "Linux {major}.{minor} is older than {}.{}, which the socket ring needs (multishot receive): \
             unless this kernel has it backported, connections will be closed at their first read",
            KERNEL_MIN.0, KERNEL_MIN.1
        ));
    }
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
pub fn read_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut fields = line["MemAvailable:".len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(kib.saturating_mul(1024))
}

/// Bytes this process's cgroup may still take: its memory limit less its
/// usage, from cgroup v2 (`memory.max`, `memory.current`) or v1
/// (`memory.limit_in_bytes`, `memory.usage_in_bytes`). `cgroups` is the text
/// of `/proc/self/cgroup`; `read` reads a file under `/sys/fs/cgroup`.
/// `None` when there is no limit or it cannot be read.
pub fn cgroup_memory_room(cgroups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    // v1's "no limit" is the largest page-aligned i64; anything near it is none.
    const UNLIMITED: u64 = 1 << 62;
    let number = |text: String| text.trim().parse::<u64>().ok();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_end_matches('/');
        let (limit, usage) = if controllers.is_empty() {
            (format!("{path}/memory.max"), format!("{path}/memory.current"))
        } else if controllers.split(',').any(|c| c == "memory") {
            (format!("memory{path}/memory.limit_in_bytes"), format!("memory{path}/memory.usage_in_bytes"))
        } else {
            continue;
        };
        let limit = read(limit.trim_start_matches('/')).and_then(number);
        let Some(limit) = limit.filter(|l| *l < UNLIMITED) else { continue };
        let usage = read(usage.trim_start_matches('/')).and_then(number).unwrap_or(0);
        return Some(limit.saturating_sub(usage));
    }
    None
}

/// Reads a limit of this process from `/proc/self/limits` ("Max open files",
/// "Max locked memory").
pub fn read_limit(limits: &str, name: &str) -> Option<Limit> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    let parse = |v: &str| if v == "unlimited" { Some(None) } else { v.parse().ok().map(Some) };
    Some(Limit { soft: parse(fields.next()?)?, hard: parse(fields.next()?)? })
}

/// Raises the soft limit of `resource` to `wanted` (or the hard limit, if
/// lower). Returns the soft limit in force afterwards.
#[allow(unsafe_code)]
pub fn raise_soft_limit(resource: libc::__rlimit_resource_t, wanted: u64) -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return None;
    }
    let target = wanted.min(limit.rlim_max);
    if limit.rlim_cur < target {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit; lowering or raising the soft
        // limit up to the hard one needs no privilege and cannot fail unsafely.
        if unsafe { libc::setrlimit(resource, &raised) } == 0 {
            limit.rlim_cur = target;
        }
    }
    Some(limit.rlim_cur)
}

/// Runs every check against this host, raising soft limits where it can.
pub fn check_host(config: &ServerConfig) -> Findings {
    let shards = config.shards.len() as u64;
    raise_soft_limit(libc::RLIMIT_NOFILE, shards * (FDS_PER_SHARD + config.max_connections as u64));
    raise_soft_limit(libc::RLIMIT_MEMLOCK, shards * IO_MEMORY_PER_SHARD);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let unknown = Limit { soft: None, hard: None };
    let nofile = read_limit(&limits, "Max open files").unwrap_or(unknown);
    let memlock = read_limit(&limits, "Max locked memory").unwrap_or(unknown);
    let io_uring_disabled = read_u8(Path::new("/proc/sys/kernel/io_uring_disabled"));
    let mut found = judge(config, nofile, memlock, io_uring_disabled);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let room = cgroup_memory_room(&cgroups, |file| {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(file)).ok()
    });
    let available = match (read_mem_available(&meminfo), room) {
        (Some(host), Some(room)) => Some(host.min(room)),
        (host, room) => host.or(room),
    };
    judge_memory(config, available, &mut found);
    judge_kernel(&std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(), &mut found);
    if config.durability == crate::config::Durability::Sync {
        // Each shard's directory, not only the data directory: one may be a
        // mount of its own (a disk per shard), on a device of its own.
        let dirs =
            config.shards.iter().map(|shard| crate::wal::segment::shard_dir(&config.data_dir, shard.id));
        found.errors.extend(crate::sysfs_check::judge_dirs(Path::new("/sys"), dirs));
    }
    found
}

fn read_u8(path: &Path) -> Option<u8> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Args;

    #[test]
    fn a_kernel_older_than_the_ring_needs_is_a_warning() {
        let warned = |release: &str| {
            let mut found = Findings::default();
            judge_kernel(release, &mut found);
            assert!(found.errors.is_empty());
            found.warnings.len()
        };
        assert_eq!(warned("5.19.0-46-generic"), 1);
        assert_eq!(warned("5.4.0"), 1);
        assert_eq!(warned("6.0.0"), 0);
        assert_eq!(warned("6.18.44-fc"), 0);
        assert_eq!(warned("10.1"), 0, "compared as numbers, not text");
        assert_eq!(warned(""), 0, "unknown: nothing said");
        assert_eq!(warned("garbage"), 0);
    }

    fn config(shards: u16) -> ServerConfig {
        Args::parse_from(["hongbao-server", "--shards", &shards.to_string()]).into_config().unwrap()
    }

    fn limit(soft: u64) -> Limit {
        Limit { soft: Some(soft), hard: Some(soft) }
    }

    #[test]
    fn a_well_set_host_passes() {
        let found = judge(&config(2), limit(1 << 20), Limit { soft: None, hard: None }, Some(0));
        assert_eq!(found, Findings::default());
    }

    #[test]
    fn each_problem_names_its_fix() {
        let found = judge(&config(2), limit(100), limit(1 << 20), Some(2));
        assert_eq!(found.errors.len(), 2, "{found:?}");
        assert!(found.errors.iter().any(|e| e.contains("io_uring_disabled=0")));
        assert!(found.errors.iter().any(|e| e.contains("ulimit -n")));
        assert!(found.warnings.iter().any(|w| w.contains("ulimit -l")));

        let found = judge(&config(2), limit(5_000), limit(64 << 20), Some(1));
        assert!(found.errors.is_empty(), "{found:?}");
        assert!(found.warnings.iter().any(|w| w.contains("room for 2436 connections per shard")));
        assert_eq!(found.connections_max, Some(2436), "(5,000 - 2 x 64) / 2: the cap the shards keep to");

        assert!(found.warnings.iter().any(|w| w.contains("io_uring_group")));

        // Room for one connection a shard is the least the server starts with.
        let found = judge(&config(2), limit(2 * 65 - 1), limit(64 << 20), Some(0));
        assert!(found.errors.iter().any(|e| e.contains("take a connection each")), "{found:?}");
        let found = judge(&config(2), limit(2 * 65), limit(64 << 20), Some(0));
        assert!(found.errors.is_empty(), "{found:?}");
        assert_eq!(found.connections_max, Some(1));
    }

    #[test]
    fn a_prefault_beyond_the_available_memory_is_refused() {
        let mut config = config(2);
        config.prefault_bytes = 3 << 30;
        let mut found = Findings::default();
        judge_memory(&config, Some(8 << 30), &mut found);
        assert_eq!(found, Findings::default(), "2 x 3 GiB fits in 8 GiB");
        judge_memory(&config, Some(5 << 30), &mut found);
        assert_eq!(found.errors.len(), 1, "{found:?}");
        assert!(
            found.errors[0].contains("6144 MiB") && found.errors[0].contains("--prefault-mib"),
            "{found:?}"
        );
        let mut unknown = Findings::default();
        judge_memory(&config, None, &mut unknown);
        assert_eq!(unknown, Findings::default(), "no meminfo, no verdict");
    }

    #[test]
    fn the_cgroup_memory_room_is_read_from_v2_or_v1() {
        let files = |pairs: &'static [(&'static str, &'static str)]| {
            move |file: &str| pairs.iter().find(|(name, _)| *name == file).map(|(_, text)| text.to_string())
        };
        let v2 = files(&[("svc/memory.max", "8589934592\n"), ("svc/memory.current", "1073741824\n")]);
        assert_eq!(cgroup_memory_room("0::/svc\n", v2), Some(7 << 30));
        let unlimited = files(&[("svc/memory.max", "max\n"), ("svc/memory.current", "1\n")]);
        assert_eq!(cgroup_memory_room("0::/svc\n", unlimited), None);
        let v1 = files(&[
            ("memory/box/memory.limit_in_bytes", "4294967296\n"),
            ("memory/box/memory.usage_in_bytes", "1073741824\n"),
        ]);
        let v1_cgroups = "5:devices:/\n4:memory:/box\n1:cpu:/\n0::/\n";
        assert_eq!(cgroup_memory_room(v1_cgroups, v1), Some(3 << 30));
        let v1_unlimited = files(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(cgroup_memory_room("4:memory:/\n", v1_unlimited), None);
        assert_eq!(cgroup_memory_room("", |_: &str| None), None);
    }

    #[test]
    fn mem_available_is_read() {
        let text = "MemTotal:       24622348 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n";
        assert_eq!(read_mem_available(text), Some(22_000_000 * 1024));
        assert_eq!(read_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(read_mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn proc_limits_are_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 524288               files\n\
                    Max locked memory         8388608              unlimited            bytes\n";
        assert_eq!(read_limit(text, "Max open files"), Some(Limit { soft: Some(1024), hard: Some(524288) }));
        assert_eq!(read_limit(text, "Max locked memory"), Some(Limit { soft: Some(8388608), hard: None }));
        assert_eq!(read_limit(text, "Max processes"), None);
    }
}

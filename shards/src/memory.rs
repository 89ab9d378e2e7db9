//! How much memory the process may use and how much is still free: the host's
//! (`/proc/meminfo`), or its cgroup v2 limit when one is set. Sizes the tail caches
//! (`tail_cache_bytes_max = "auto"`) and tells the shards when to give cached memory back.

use std::fs;

/// Share of the memory limit the tail caches of all shards take by default ("auto").
pub const TAIL_CACHE_SHARE_OF_MEMORY: u64 = 8;

/// Below this share of the limit still available, memory is short: the shards evict half of
/// their tail caches at each saver tick until it is not.
pub const LOW_MEMORY_SHARE: u64 = 16;

/// The memory this process may use, and how much of it is available now (free, or held by
/// caches the kernel can reclaim). Bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReading {
    /// The host's memory, or the cgroup's limit if lower.
    pub limit: u64,
    /// What can still be taken before the kernel must reclaim from processes.
    pub available: u64,
}

impl MemoryReading {
    /// Reads `/proc/meminfo` and, when the process runs in a cgroup v2 with a memory limit,
    /// that cgroup's limit and usage; `None` where neither can be read (not Linux).
    pub fn now() -> Option<Self> {
        let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
        let host = Self {
            limit: meminfo_kib(&meminfo, "MemTotal:")? * 1024,
            available: meminfo_kib(&meminfo, "MemAvailable:")? * 1024,
        };
        Some(match cgroup_reading() {
            Some(cgroup) if cgroup.limit < host.limit => Self {
                limit: cgroup.limit,
                available: cgroup.available.min(host.available),
            },
            _ => host,
        })
    }

    /// True when less than 1/`LOW_MEMORY_SHARE` of the limit is available.
    pub fn is_low(&self) -> bool {
        self.available < self.limit / LOW_MEMORY_SHARE
    }
}

/// The default per-shard tail cache: 1/`TAIL_CACHE_SHARE_OF_MEMORY` of the memory limit,
/// split evenly across `shard_count` shards (64 MiB per shard where memory cannot be read).
pub fn auto_tail_cache_bytes(shard_count: u16) -> u64 {
    let total = MemoryReading::now().map_or(64 << 20, |reading| {
        reading.limit / TAIL_CACHE_SHARE_OF_MEMORY
    });
    total / u64::from(shard_count.max(1))
}

/// A `Key:   1234 kB` line of `/proc/meminfo`, in KiB.
fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The cgroup v2 of this process, if it has a memory limit: the limit, and the limit less
/// what the cgroup uses that the kernel cannot simply drop (its inactive page cache can be).
fn cgroup_reading() -> Option<MemoryReading> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = format!("/sys/fs/cgroup{}", path.trim_end());
    let limit: u64 = fs::read_to_string(format!("{dir}/memory.max"))
        .ok()?
        .trim()
        .parse()
        .ok()?; // "max": no limit
    let current: u64 = fs::read_to_string(format!("{dir}/memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = fs::read_to_string(format!("{dir}/memory.stat")).unwrap_or_default();
    let inactive_file = stat
        .lines()
        .find_map(|line| line.strip_prefix("inactive_file "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some(MemoryReading {
        limit,
        available: limit.saturating_sub(current.saturating_sub(inactive_file)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_lines_are_read_in_kib() {
        let meminfo = "MemTotal:       24567890 kB\nMemFree:  100 kB\nMemAvailable:   1234 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal:"), Some(24_567_890));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable:"), Some(1234));
        assert_eq!(meminfo_kib(meminfo, "SwapTotal:"), None);
    }

    #[test]
    fn low_means_under_a_sixteenth_of_the_limit() {
        let reading = |available| MemoryReading {
            limit: 16 << 30,
            available,
        };
        assert!(reading((1 << 30) - 1).is_low());
        assert!(!reading(1 << 30).is_low());
    }

    #[test]
    fn this_machine_has_a_reading_and_an_auto_cache() {
        let reading = MemoryReading::now().expect("Linux has /proc/meminfo");
        assert!(reading.limit > 0 && reading.available <= reading.limit);
        let one = auto_tail_cache_bytes(1);
        assert!(one > 0 && one <= reading.limit / TAIL_CACHE_SHARE_OF_MEMORY);
        assert!(auto_tail_cache_bytes(4) <= one / 4 + 1);
    }
}

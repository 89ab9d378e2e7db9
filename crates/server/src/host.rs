//! Process and host figures for GetStats, read from /proc and statvfs when asked.

use std::{path::Path, time::Duration};

/// What GetStats reports about the process and the machine.
#[derive(Debug, Default)]
pub struct HostFigures {
    /// Resident set size of the server.
    pub rss_bytes: u64,
    /// Physical memory.
    pub total_memory_bytes: u64,
    /// Memory available to new work.
    pub available_memory_bytes: u64,
    /// CPU time the process used, in seconds.
    pub cpu_seconds: f64,
    /// Whole-machine CPU use since boot, percent.
    pub total_cpu_percent: f32,
    /// Bytes the process read from storage.
    pub read_bytes: u64,
    /// Bytes the process wrote to storage.
    pub written_bytes: u64,
    /// Threads of the process.
    pub threads_count: u32,
    /// Free space on the data directory's filesystem.
    pub free_disk_bytes: u64,
    /// Size of that filesystem.
    pub total_disk_bytes: u64,
    /// Host name.
    pub hostname: String,
    /// "Linux".
    pub os_name: String,
    /// Kernel release.
    pub os_version: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The number after `key` on its line (e.g. "MemTotal:  123 kB").
fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 { page as u64 } else { 4096 }
}

impl HostFigures {
    /// Reads everything now.
    pub fn read(data_dir: &Path) -> Self {
        let meminfo = read("/proc/meminfo");
        let status = read("/proc/self/status");
        let io = read("/proc/self/io");
        let statm = read("/proc/self/statm");
        let rss_pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let (free_disk_bytes, total_disk_bytes) = disk_space(data_dir);
        Self {
            rss_bytes: rss_pages * page_bytes(),
            total_memory_bytes: field(&meminfo, "MemTotal:") * 1024,
            available_memory_bytes: field(&meminfo, "MemAvailable:") * 1024,
            cpu_seconds: process_cpu_seconds(),
            total_cpu_percent: machine_cpu_percent(),
            read_bytes: field(&io, "read_bytes:"),
            written_bytes: field(&io, "write_bytes:"),
            threads_count: field(&status, "Threads:") as u32,
            free_disk_bytes,
            total_disk_bytes,
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            os_name: "Linux".to_owned(),
            os_version: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }

    /// The process's average CPU use over its run time, percent of one core.
    pub fn process_cpu_percent(&self, run_time: Duration) -> f32 {
        let seconds = run_time.as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        (self.cpu_seconds / seconds * 100.0) as f32
    }
}

/// utime + stime of this process, from /proc/self/stat (fields 14 and 15).
fn process_cpu_seconds() -> f64 {
    let stat = read("/proc/self/stat");
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// Busy share of all CPU time since boot, from the first line of /proc/stat.
fn machine_cpu_percent() -> f32 {
    let stat = read("/proc/stat");
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    if total == 0 {
        return 0.0;
    }
    ((total - idle) as f64 / total as f64 * 100.0) as f32
}

fn disk_space(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    // SAFETY: statvfs writes only into the zeroed struct we pass; the path is NUL-terminated.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return (0, 0);
        }
        let block = stat.f_frsize;
        (stat.f_bavail * block, stat.f_blocks * block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_this_process_are_plausible() {
        let figures = HostFigures::read(Path::new("."));
        assert!(figures.rss_bytes > 0);
        assert!(figures.total_memory_bytes >= figures.available_memory_bytes);
        assert!(figures.threads_count >= 1);
        assert!(figures.total_disk_bytes >= figures.free_disk_bytes);
        assert_eq!(field("MemTotal:   42 kB\n", "MemTotal:"), 42);
    }
}

//! What the run ran on, read from the machine (Linux's /proc and uname).

use serde::Serialize;

/// The machine of the bench client (and of the server, when both run together).
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// The host name.
    pub hostname: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// Total memory in bytes, from /proc/meminfo.
    pub memory_bytes: u64,
}

impl Machine {
    /// Reads the machine's description; unknown parts are empty.
    pub fn describe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_default();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        Machine {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpus: std::thread::available_parallelism().map_or(0, |cpus| cpus.get()),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            memory_bytes: memory_kib * 1024,
        }
    }
}

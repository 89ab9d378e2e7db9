//! The start-up check: galgo runs only on io_uring, so it refuses to start without it.

use std::io;

use thiserror::Error;

/// Why io_uring cannot be used here, with the fix.
#[derive(Debug, Error)]
#[error("io_uring is unavailable: {cause}. Fix: {fix}")]
pub struct UringUnavailable {
    /// What the kernel said, in words.
    pub cause: String,
    /// What the operator can do.
    pub fix: &'static str,
    /// The raw error.
    #[source]
    pub error: io::Error,
}

/// Sets up and drops a small ring with the flags the shards will use, so that a missing
/// kernel feature, a seccomp filter or a memlock limit is reported once, clearly, before any
/// shard starts.
pub fn probe_io_uring(entries: u32, coop_taskrun: bool) -> Result<(), UringUnavailable> {
    let mut builder =
        io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
    if coop_taskrun {
        builder.setup_coop_taskrun();
    }
    match builder.build(entries) {
        Ok(_ring) => Ok(()),
        Err(error) => Err(explain(error)),
    }
}

/// Names the cause and the fix of a failed ring setup (also used when a shard's own ring
/// fails after the probe passed, e.g. when many rings exhaust RLIMIT_MEMLOCK).
pub(crate) fn explain(error: io::Error) -> UringUnavailable {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|value| value.trim().to_owned())
        .unwrap_or_default();
    let (cause, fix) = match error.raw_os_error() {
        Some(code) if code == libc_errno::ENOSYS => (
            "the kernel has no io_uring (io_uring_setup returned ENOSYS)".to_owned(),
            "run on Linux 6.1 or newer built with CONFIG_IO_URING=y",
        ),
        Some(code) if code == libc_errno::EPERM && disabled != "0" && !disabled.is_empty() => (
            format!("io_uring is disabled by sysctl kernel.io_uring_disabled = {disabled}"),
            "set `sysctl kernel.io_uring_disabled=0` (or 1 and add the user to kernel.io_uring_group)",
        ),
        Some(code) if code == libc_errno::EPERM => (
            "io_uring_setup was denied (EPERM): a seccomp profile blocks it".to_owned(),
            "allow io_uring_setup, io_uring_enter and io_uring_register in the container's \
             seccomp profile (Docker: --security-opt seccomp=<profile allowing them>)",
        ),
        Some(code) if code == libc_errno::ENOMEM => (
            "the ring could not be allocated (ENOMEM): the locked-memory limit is too low"
                .to_owned(),
            "raise RLIMIT_MEMLOCK (ulimit -l unlimited, LimitMEMLOCK=infinity in systemd) \
             or lower [shards] ring_entries",
        ),
        Some(code) if code == libc_errno::EINVAL => (
            "the kernel rejected the ring parameters (EINVAL): it is too old for these flags"
                .to_owned(),
            "run on Linux 6.1 or newer, or set [shards] coop_taskrun = false and sqpoll_idle_ms = 0",
        ),
        _ => (
            format!("io_uring_setup failed: {error}"),
            "check the kernel version (6.1+), seccomp and RLIMIT_MEMLOCK",
        ),
    };
    UringUnavailable { cause, fix, error }
}

/// The few errno values the probe tells apart (Linux, all architectures galgo targets).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOMEM: i32 = 12;
    pub const EINVAL: i32 = 22;
    pub const ENOSYS: i32 = 38;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_passes_on_a_machine_that_runs_the_tests() {
        probe_io_uring(8, true).expect("the test machine has io_uring");
    }

    #[test]
    fn errors_name_cause_and_fix() {
        let message = explain(io::Error::from_raw_os_error(libc_errno::ENOSYS)).to_string();
        assert!(
            message.contains("ENOSYS") && message.contains("Fix:"),
            "{message}"
        );
    }
}

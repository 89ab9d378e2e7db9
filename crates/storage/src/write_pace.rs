//! Write pacing: when producers outrun the disk, appenders are slowed smoothly to the disk's
//! measured rate before the shard's memory bound is reached, instead of running free until
//! the bound and then waiting, all at once, for whatever the disk is doing.
//!
//! The journals' backlog (tail_cache.rs) absorbs bursts: below half the shard's bound nothing
//! is paced. Above it, appends are admitted one after another at the rate the shard's writes
//! have achieved (a moving average over windows of busy time, the short gaps between
//! back-to-back writes included), scaled from 1× at half the
//! bound down to ½× at the bound, so a backlog that keeps growing is pushed back towards the
//! middle. A batch of `n` bytes then waits about `n / rate` behind the batches admitted
//! before it, milliseconds for a 1 MB batch, where a full bound makes its appender wait for
//! the disk itself: a whole 8 MB run, or, while an fdatasync or the device stalls, a second
//! or more (measured on a 2-vCPU cloud disk: 8 MB O_DIRECT writes taking 0.2–1.1 s every few
//! seconds in a 10 GB run). The average moves slowly, so such a stall does not stop
//! admissions: the half of the bound above the pacing point soaks it up. Only a stall longer
//! than that half takes (about 1.3 s at 560 MB/s into a 750 MB half) reaches the bound.
//!
//! This is what the kernel's dirty-page throttling (`balance_dirty_pages`) does for buffered
//! writers, with the same shape: a free zone, a paced zone, a hard limit.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

/// Where pacing starts, as a fraction of the shard's bound: below it bursts go free.
const PACED_FROM: f64 = 0.5;
/// The fraction of the measured rate admitted at the bound itself (1 at `PACED_FROM`, falling
/// linearly), so a backlog that keeps growing is pushed back.
const RATE_AT_BOUND: f64 = 0.5;
/// Busy time one rate sample covers.
const WINDOW: Duration = Duration::from_millis(250);
/// Weight of a new sample in the moving average: a stalled window (a quarter of a second
/// with nothing written) moves the rate by a fifth.
const SAMPLE_WEIGHT: f64 = 0.2;
/// The shortest pause worth sleeping for: below it the next admission is only recorded.
const PAUSE_MIN: Duration = Duration::from_micros(200);
/// A pause between one write's end and the next one's start shorter than this is the writer's
/// own overhead (committing a run, the lock changing hands, a roll, an fdatasync beside it)
/// and counts as busy time: the rate is what the writes sustain back to back, not what one
/// write achieves alone. Longer, the shard had nothing to write.
const GAP_MAX: Duration = Duration::from_millis(20);

/// One shard's write rate and admission clock.
#[derive(Default)]
pub(crate) struct WritePace {
    /// Writes in flight on the shard.
    in_flight: Cell<u32>,
    /// Since when the busy time not yet counted in the window runs (writes in flight).
    busy_since: Cell<Option<Instant>>,
    /// When the last write ended, while none is in flight.
    idle_since: Cell<Option<Instant>>,
    window_bytes: Cell<u64>,
    window_busy: Cell<Duration>,
    /// Bytes per second written while busy, a moving average; 0 until the first window.
    rate: Cell<f64>,
    /// When the next paced append may go.
    next_admission: Cell<Option<Instant>>,
}

impl WritePace {
    /// A write of the shard starts.
    pub(crate) fn write_started(&self, now: Instant) {
        if self.in_flight.get() == 0 {
            // A short gap since the last write is part of writing (GAP_MAX).
            let since = self
                .idle_since
                .take()
                .filter(|idle| now.saturating_duration_since(*idle) < GAP_MAX)
                .unwrap_or(now);
            self.busy_since.set(Some(since));
        }
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// A write of the shard ended, having written `bytes` (0 when it failed).
    pub(crate) fn write_finished(&self, bytes: u64, now: Instant) {
        let in_flight = self.in_flight.get().saturating_sub(1);
        self.in_flight.set(in_flight);
        if let Some(since) = self.busy_since.get() {
            self.window_busy
                .set(self.window_busy.get() + now.saturating_duration_since(since));
        }
        self.busy_since.set((in_flight > 0).then_some(now));
        self.idle_since.set((in_flight == 0).then_some(now));
        self.window_bytes.set(self.window_bytes.get() + bytes);
        let busy = self.window_busy.get();
        if busy >= WINDOW {
            let sample = self.window_bytes.get() as f64 / busy.as_secs_f64();
            let rate = self.rate.get();
            self.rate.set(if rate == 0.0 {
                sample
            } else {
                rate + SAMPLE_WEIGHT * (sample - rate)
            });
            self.window_bytes.set(0);
            self.window_busy.set(Duration::ZERO);
        }
    }

    /// The shard's measured write rate in bytes per second (0 before the first window).
    pub(crate) fn rate(&self) -> f64 {
        self.rate.get()
    }

    /// How long an append of `bytes` waits before it is journaled, with `unwritten` bytes of
    /// the shard not yet written and a bound of `bytes_max`; None when it goes at once.
    pub(crate) fn admission(
        &self,
        bytes: u64,
        unwritten: u64,
        bytes_max: u64,
        now: Instant,
    ) -> Option<Duration> {
        let free_up_to = (bytes_max as f64 * PACED_FROM) as u64;
        let rate = self.rate.get();
        if unwritten < free_up_to || rate == 0.0 {
            self.next_admission.set(None);
            return None;
        }
        let depth = (unwritten - free_up_to) as f64 / (bytes_max - free_up_to).max(1) as f64;
        let admitted_rate = rate * (1.0 - (1.0 - RATE_AT_BOUND) * depth.min(1.0));
        let start = self.next_admission.get().map_or(now, |next| next.max(now));
        self.next_admission.set(Some(
            start + Duration::from_secs_f64(bytes as f64 / admitted_rate),
        ));
        let pause = start - now;
        (pause >= PAUSE_MIN).then_some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    /// A pace that has measured `rate` bytes per second.
    fn measured(rate: u64, start: Instant) -> WritePace {
        let pace = WritePace::default();
        pace.write_started(start);
        pace.write_finished(rate / 2, start + Duration::from_millis(500));
        assert!((pace.rate() - rate as f64).abs() < 1.0);
        pace
    }

    #[test]
    fn nothing_is_paced_below_half_the_bound_or_before_a_rate_is_known() {
        let now = Instant::now();
        let unmeasured = WritePace::default();
        assert_eq!(unmeasured.admission(MB, 900 * MB, 1000 * MB, now), None);
        let pace = measured(500 * MB, now);
        for _ in 0..100 {
            assert_eq!(pace.admission(MB, 499 * MB, 1000 * MB, now), None);
        }
    }

    #[test]
    fn appends_above_half_the_bound_are_admitted_at_the_measured_rate() {
        let now = Instant::now();
        let pace = measured(500 * MB, now);
        // Just above half: 1×, so 1 MB every 2 ms.
        assert_eq!(pace.admission(MB, 500 * MB, 1000 * MB, now), None);
        let second = pace.admission(MB, 500 * MB, 1000 * MB, now).unwrap();
        assert!(second.abs_diff(Duration::from_millis(2)) < Duration::from_micros(10));
        let third = pace.admission(MB, 500 * MB, 1000 * MB, now).unwrap();
        assert!(third.abs_diff(Duration::from_millis(4)) < Duration::from_micros(10));
        // Back below half: the clock is forgotten.
        assert_eq!(pace.admission(MB, 100 * MB, 1000 * MB, now), None);
        assert_eq!(pace.admission(MB, 500 * MB, 1000 * MB, now), None);
    }

    #[test]
    fn a_fuller_backlog_is_admitted_more_slowly() {
        let now = Instant::now();
        let pace = measured(500 * MB, now);
        pace.admission(MB, 1000 * MB, 1000 * MB, now);
        // At the bound: ½×, so 1 MB every 4 ms.
        let second = pace.admission(MB, 1000 * MB, 1000 * MB, now).unwrap();
        assert!(second.abs_diff(Duration::from_millis(4)) < Duration::from_micros(10));
    }

    #[test]
    fn a_stalled_window_moves_the_rate_by_a_fifth() {
        let start = Instant::now();
        let pace = measured(500 * MB, start);
        let later = start + Duration::from_secs(1);
        pace.write_started(later);
        pace.write_finished(0, later + Duration::from_millis(300));
        assert!((pace.rate() - 400.0 * MB as f64).abs() < 1.0);
    }

    #[test]
    fn short_gaps_between_writes_count_as_writing_and_idle_time_does_not() {
        let start = Instant::now();
        let pace = WritePace::default();
        let at = |ms| start + Duration::from_millis(ms);
        // 100 ms writes 10 ms apart: 200 MB over 210 ms.
        pace.write_started(at(0));
        pace.write_finished(100 * MB, at(100));
        pace.write_started(at(110));
        pace.write_finished(100 * MB, at(210));
        // Idle for a second, then 50 MB over 40 ms: the window closes at 250 ms of busy time.
        pace.write_started(at(1210));
        pace.write_finished(50 * MB, at(1250));
        let rate = pace.rate();
        assert!((rate - 250.0 * MB as f64 / 0.25).abs() < 1.0, "{rate}");
    }

    #[test]
    fn overlapping_writes_count_busy_time_once() {
        let start = Instant::now();
        let pace = WritePace::default();
        pace.write_started(start);
        pace.write_started(start + Duration::from_millis(100));
        pace.write_finished(50 * MB, start + Duration::from_millis(200));
        pace.write_finished(50 * MB, start + Duration::from_millis(250));
        // 100 MB over 250 ms of busy time (not 250 + 150).
        assert!((pace.rate() - 400.0 * MB as f64).abs() < 1.0);
    }
}

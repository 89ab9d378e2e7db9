//! Latency histograms: one per actor (and per second), merged by adding counts, never by
//! averaging percentiles.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in nanoseconds.
const LOWEST_NS: u64 = 1;
/// The largest latency recorded exactly; larger values saturate to it (and still count).
pub const HIGHEST_NS: u64 = 600 * 1_000_000_000;
/// Three significant digits: a recorded value is within 0.1% of the real one.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The percentiles every summary reports.
pub const PERCENTILES: [(&str, f64); 6] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
            .expect("valid histogram bounds");
        Self { histogram }
    }

    /// Records one latency.
    pub fn record_ns(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.max(LOWEST_NS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share their bounds");
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `percentile` (0..=100), in ns.
    pub fn at_percentile_ns(&self, percentile: f64) -> u64 {
        self.histogram.value_at_percentile(percentile)
    }

    /// The summary in microseconds, or `None` without samples.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.histogram.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(LatencySummary {
            samples: self.count(),
            min_us: us(self.histogram.min()),
            mean_us: self.histogram.mean() / 1_000.0,
            percentiles_us: PERCENTILES
                .iter()
                .map(|&(name, p)| (name.to_owned(), us(self.at_percentile_ns(p))))
                .collect(),
            max_us: us(self.histogram.max()),
        })
    }

    /// The percentile curve for an HDR plot: `(percentile, µs)` at 1 - 10^-k steps, finer
    /// towards the tail, up to the maximum.
    pub fn curve(&self) -> Vec<(f64, f64)> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        let mut points = Vec::new();
        let mut remaining = 100.0_f64;
        while remaining > 100.0 / self.count().max(1) as f64 / 2.0 && remaining > 1e-5 {
            for step in [1.0, 0.75, 0.5, 0.25] {
                let percentile = 100.0 - remaining * step;
                let value = self.at_percentile_ns(percentile) as f64 / 1_000.0;
                points.push((percentile, value));
            }
            remaining /= 10.0;
        }
        points.push((100.0, self.histogram.max() as f64 / 1_000.0));
        points
    }
}

/// Percentiles and extremes of one histogram, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct LatencySummary {
    /// Samples behind the figures.
    pub samples: u64,
    /// Smallest latency.
    pub min_us: f64,
    /// Mean latency.
    pub mean_us: f64,
    /// `(name, value)` for each of [`PERCENTILES`].
    pub percentiles_us: Vec<(String, f64)>,
    /// Largest latency.
    pub max_us: f64,
}

impl LatencySummary {
    /// The value of the percentile named `name` (e.g. `"p99"`).
    pub fn percentile_us(&self, name: &str) -> Option<f64> {
        self.percentiles_us
            .iter()
            .find(|(known, _)| known == name)
            .map(|&(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(values: impl IntoIterator<Item = u64>) -> Latencies {
        let mut latencies = Latencies::new();
        for value in values {
            latencies.record_ns(value);
        }
        latencies
    }

    #[test]
    fn merging_equals_recording_everything_in_one_histogram() {
        // Two actors with very different latencies: merging must give the percentiles of the
        // union, which averaging the two actors' percentiles would not.
        let fast = filled((0..9_000).map(|i| 10_000 + i));
        let slow = filled((0..1_000).map(|i| 5_000_000 + i * 1_000));
        let mut merged = Latencies::new();
        merged.merge(&fast);
        merged.merge(&slow);
        let union = filled(
            (0..9_000)
                .map(|i| 10_000 + i)
                .chain((0..1_000).map(|i| 5_000_000 + i * 1_000)),
        );
        assert_eq!(merged.count(), 10_000);
        for (_, p) in PERCENTILES {
            assert_eq!(
                merged.at_percentile_ns(p),
                union.at_percentile_ns(p),
                "p{p}"
            );
        }
        let p95 = merged.at_percentile_ns(95.0);
        assert!(
            p95 > 5_000_000,
            "p95 of the union lies among the slow samples: {p95}"
        );
        let averaged = (fast.at_percentile_ns(95.0) + slow.at_percentile_ns(95.0)) / 2;
        assert_ne!(
            p95 / 100_000,
            averaged / 100_000,
            "averaging percentiles is wrong"
        );
        assert_eq!(
            merged.summary().unwrap().max_us,
            union.summary().unwrap().max_us
        );
    }

    #[test]
    fn summary_is_in_microseconds_within_precision() {
        let latencies = filled((1..=1_000).map(|i| i * 1_000));
        let summary = latencies.summary().unwrap();
        assert_eq!(summary.samples, 1_000);
        let p50 = summary.percentile_us("p50").unwrap();
        assert!((p50 - 500.0).abs() <= 0.5, "{p50}");
        let p99 = summary.percentile_us("p99").unwrap();
        assert!((p99 - 990.0).abs() <= 1.0, "{p99}");
        assert!((summary.max_us - 1_000.0).abs() <= 1.0);
        assert!((summary.min_us - 1.0).abs() < 0.01);
        assert!(Latencies::new().summary().is_none());
    }

    #[test]
    fn huge_values_saturate_and_the_curve_rises() {
        let mut latencies = Latencies::new();
        for _ in 0..100 {
            latencies.record_ns(2_000);
        }
        latencies.record_ns(u64::MAX);
        assert_eq!(latencies.count(), 101);
        assert!(latencies.summary().unwrap().max_us >= HIGHEST_NS as f64 / 1_000.0 * 0.99);
        let curve = latencies.curve();
        assert!(
            curve
                .windows(2)
                .all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1)
        );
        assert_eq!(curve.last().unwrap().0, 100.0);
    }
}

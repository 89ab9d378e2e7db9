//! The per-second time series: messages, bytes and a latency histogram for each second since
//! the measurement started. Actors' series are merged second by second.

use serde::Serialize;

use crate::latency::Latencies;

/// One second of one actor (or of all, once merged).
#[derive(Clone, Debug, Default)]
pub struct Second {
    /// Messages completed in this second.
    pub messages: u64,
    /// Message bytes completed in this second.
    pub bytes: u64,
    /// Latencies recorded in this second.
    pub latencies: Latencies,
}

/// Seconds since the start, densely indexed.
#[derive(Clone, Debug, Default)]
pub struct Series {
    seconds: Vec<Second>,
}

impl Series {
    /// The second at `index`, created (with every second before it) when missing.
    pub fn at(&mut self, index: usize) -> &mut Second {
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Second::default);
        }
        &mut self.seconds[index]
    }

    /// Adds `other` second by second.
    pub fn merge(&mut self, other: &Series) {
        for (index, second) in other.seconds.iter().enumerate() {
            let mine = self.at(index);
            mine.messages += second.messages;
            mine.bytes += second.bytes;
            mine.latencies.merge(&second.latencies);
        }
    }

    /// One point per second for the reports.
    pub fn points(&self) -> Vec<SecondPoint> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(index, second)| {
                let summary = second.latencies.summary();
                let at = |name| summary.as_ref().and_then(|s| s.percentile_us(name));
                SecondPoint {
                    second: index as u64,
                    messages: second.messages,
                    megabytes_per_sec: second.bytes as f64 / 1e6,
                    p50_us: at("p50"),
                    p99_us: at("p99"),
                    max_us: summary.as_ref().map(|s| s.max_us),
                }
            })
            .collect()
    }
}

/// One second in a report. The last second is usually partial.
#[derive(Clone, Debug, Serialize)]
pub struct SecondPoint {
    /// Seconds since the start of the measurement.
    pub second: u64,
    /// Messages completed.
    pub messages: u64,
    /// Message bytes completed, in MB (10^6).
    pub megabytes_per_sec: f64,
    /// Median latency of the second.
    pub p50_us: Option<f64>,
    /// 99th percentile of the second.
    pub p99_us: Option<f64>,
    /// Largest latency of the second.
    pub max_us: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_merge_second_by_second() {
        let mut a = Series::default();
        a.at(0).messages = 5;
        a.at(0).latencies.record_ns(1_000);
        let mut b = Series::default();
        b.at(2).messages = 7;
        b.at(2).bytes = 3_000_000;
        b.at(0).latencies.record_ns(3_000);
        a.merge(&b);
        let points = a.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].messages, 5);
        assert_eq!(points[1].messages, 0);
        assert_eq!(points[1].p50_us, None);
        assert_eq!(points[2].megabytes_per_sec, 3.0);
        assert!((points[0].max_us.unwrap() - 3.0).abs() < 0.01);
    }
}

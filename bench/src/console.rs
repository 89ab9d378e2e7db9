//! The console summary.

use std::fmt::Write;

use crate::report::{GroupFigures, Report};

/// The summary printed at the end of a run.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let args = &report.parameters;
    let _ = writeln!(
        out,
        "galgo-bench {} · {:?} · server {} {} ({}, durability {}) · {} CPUs {}",
        report.tool_version,
        args.mode,
        report.server.address,
        report.server.version,
        report.server.transport,
        report.server.durability,
        report.machine.cpus,
        report.machine.cpu_model,
    );
    let _ = writeln!(
        out,
        "{} producers, {} consumers, {} streams × {} partitions, {} B messages, {} per batch",
        args.producers,
        args.consumers,
        args.streams_count(),
        args.partitions,
        args.message_size,
        args.messages_per_batch,
    );
    let groups = [
        ("producers", &report.producers),
        ("consumers", &report.consumers),
        ("baseline send", &report.baseline.send),
        ("baseline poll", &report.baseline.poll),
    ];
    let _ = writeln!(
        out,
        "{:<14} {:>11} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "messages", "MB/s", "msg/s", "p50 µs", "p90", "p95", "p99", "p99.9", "p99.99", "max"
    );
    for (name, figures) in groups {
        if let Some(figures) = figures {
            line(&mut out, name, figures);
        }
    }
    if let Some(end_to_end) = &report.end_to_end {
        let l = &end_to_end.latency;
        let _ = write!(
            out,
            "{:<14} {:>11} {:>9} {:>12}",
            "end-to-end", l.samples, "", ""
        );
        for (_, value) in &l.percentiles_us {
            let _ = write!(out, " {value:>9.1}");
        }
        let _ = writeln!(out, " {:>9.1}", l.max_us);
    }
    for ratio in &report.ratios {
        let _ = writeln!(
            out,
            "ratio {:<26} broker {:>11.1} / baseline {:>11.1} = {:.3}",
            ratio.name, ratio.broker, ratio.baseline, ratio.ratio
        );
    }
    for error in &report.errors {
        let _ = writeln!(out, "ERROR {error}");
    }
    out
}

fn line(out: &mut String, name: &str, figures: &GroupFigures) {
    let _ = write!(
        out,
        "{:<14} {:>11} {:>9.1} {:>12.0}",
        name, figures.messages, figures.megabytes_per_sec, figures.messages_per_sec
    );
    if let Some(latency) = &figures.latency {
        for (_, value) in &latency.percentiles_us {
            let _ = write!(out, " {value:>9.1}");
        }
        let _ = write!(out, " {:>9.1}", latency.max_us);
    }
    let _ = writeln!(out);
}

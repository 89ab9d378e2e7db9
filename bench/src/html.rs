//! The self-contained HTML report: inline CSS and SVG only, no scripts, fonts or anything
//! fetched, so it opens offline and can be mailed as one file.

use std::fmt::Write;

use crate::report::{GroupFigures, Report};
use crate::series::SecondPoint;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_BOTTOM: f64 = 40.0;
const MARGIN_TOP: f64 = 30.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// One named line of a chart.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// The whole HTML page.
pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let title = format!("galgo-bench {:?} {}", report.parameters.mode, report.label);
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>",
        escape(&title),
        STYLE
    );
    let _ = write!(page, "<h1>{}</h1>", escape(&title));
    let _ = write!(
        page,
        "<pre>{}</pre>",
        escape(&crate::console::summary(report))
    );
    page.push_str(&hdr_chart(report));
    page.push_str(&series_chart(
        report,
        "Latency over time (µs per second: p50, p99, max)",
        latency_lines,
    ));
    page.push_str(&series_chart(
        report,
        "Throughput over time (MB/s)",
        throughput_lines,
    ));
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    let _ = write!(
        page,
        "<details><summary>Full JSON report</summary><pre>{}</pre></details>",
        escape(&json)
    );
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}pre{background:#f6f6f6;\
padding:1em;overflow-x:auto;font-size:12px}svg{background:#fff;border:1px solid #ddd;margin:1em 0}\
text{font-size:11px;font-family:sans-serif}";

fn groups(report: &Report) -> Vec<(&'static str, &GroupFigures)> {
    [
        ("producers", &report.producers),
        ("consumers", &report.consumers),
        ("baseline send", &report.baseline.send),
        ("baseline poll", &report.baseline.poll),
    ]
    .into_iter()
    .filter_map(|(name, figures)| figures.as_ref().map(|figures| (name, figures)))
    .collect()
}

/// x of a percentile on an HDR plot: the number of nines, so 90% is 1, 99% is 2, 99.9% is 3.
fn nines(percentile: f64) -> f64 {
    let rest = (100.0 - percentile).max(1e-6) / 100.0;
    -rest.log10()
}

fn hdr_chart(report: &Report) -> String {
    let mut lines: Vec<Line> = groups(report)
        .into_iter()
        .map(|(name, figures)| Line {
            name: name.to_owned(),
            points: figures
                .latency_curve
                .iter()
                .map(|&(p, us)| (nines(p), us))
                .collect(),
        })
        .collect();
    if let Some(end_to_end) = &report.end_to_end {
        lines.push(Line {
            name: "end-to-end".into(),
            points: end_to_end
                .latency_curve
                .iter()
                .map(|&(p, us)| (nines(p), us))
                .collect(),
        });
    }
    let labels = |x: f64| match x.round() as i32 {
        0 => "0%".to_owned(),
        n => format!("{}%", 100.0 - 100.0 / 10f64.powi(n)),
    };
    chart("Latency by percentile (HDR, µs)", &lines, &labels)
}

fn series_chart(
    report: &Report,
    title: &str,
    lines_of: fn(&str, &[SecondPoint]) -> Vec<Line>,
) -> String {
    let mut lines = Vec::new();
    for (name, figures) in groups(report) {
        if !name.starts_with("baseline") {
            lines.extend(lines_of(name, &figures.series));
        }
    }
    chart(title, &lines, &|x| format!("{x:.0}s"))
}

fn latency_lines(group: &str, series: &[SecondPoint]) -> Vec<Line> {
    let pick = |name: &str, value: fn(&SecondPoint) -> Option<f64>| Line {
        name: format!("{group} {name}"),
        points: series
            .iter()
            .filter_map(|point| value(point).map(|v| (point.second as f64 + 0.5, v)))
            .collect(),
    };
    vec![
        pick("p50", |p| p.p50_us),
        pick("p99", |p| p.p99_us),
        pick("max", |p| p.max_us),
    ]
}

fn throughput_lines(group: &str, series: &[SecondPoint]) -> Vec<Line> {
    vec![Line {
        name: group.to_owned(),
        points: series
            .iter()
            .map(|point| (point.second as f64 + 0.5, point.megabytes_per_sec))
            .collect(),
    }]
}

/// A line chart with linear axes from 0 to the largest value.
fn chart(title: &str, lines: &[Line], x_label: &dyn Fn(f64) -> String) -> String {
    let all = lines.iter().flat_map(|line| line.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0_f64, f64::max).ceil();
    let y_max = all.map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9) * 1.05;
    let plot_w = WIDTH - MARGIN_LEFT - 20.0;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let sx = |x: f64| MARGIN_LEFT + x / x_max * plot_w;
    let sy = |y: f64| MARGIN_TOP + plot_h - y / y_max * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<h2>{}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\">",
        escape(title)
    );
    for tick in 0..=4 {
        let y = y_max * f64::from(tick) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - 20.0,
            sy(y),
            sy(y),
            MARGIN_LEFT - 5.0,
            sy(y) + 4.0,
            format_value(y)
        );
    }
    let x_ticks = (x_max as usize).clamp(1, 10);
    for tick in 0..=x_ticks {
        let x = x_max * tick as f64 / x_ticks as f64;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            sx(x),
            HEIGHT - MARGIN_BOTTOM + 15.0,
            escape(&x_label(x))
        );
    }
    for (index, line) in lines.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
            points.join(" "),
            MARGIN_LEFT + 10.0,
            MARGIN_TOP + 12.0 * index as f64,
            escape(&line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_place_tail_percentiles_evenly() {
        assert!((nines(0.0) - 0.0).abs() < 1e-9);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}

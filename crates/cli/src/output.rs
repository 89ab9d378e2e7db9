//! What a command prints: a table, a list of fields or a line of text for people, and the same
//! facts as JSON (`--output json`) for scripts. Numbers stay raw in JSON; tables show sizes,
//! times and durations in human units.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables and short sentences.
    #[default]
    Table,
    /// One JSON document (or one JSON object per line when following messages).
    Json,
}

/// The human side of a command's result.
pub enum Human {
    /// Rows under a header.
    Table {
        /// Column titles.
        header: Vec<&'static str>,
        /// Cells, one `Vec` per row.
        rows: Vec<Vec<String>>,
    },
    /// Name/value pairs, one per line.
    Fields(Vec<(&'static str, String)>),
    /// A sentence.
    Text(String),
    /// Nothing more: the command printed its output as it went (`galgo top`).
    Printed,
}

/// A command's result in both forms.
pub struct Report {
    /// For people.
    pub human: Human,
    /// For scripts.
    pub json: Value,
}

impl Report {
    /// A sentence for people and a JSON document for scripts.
    pub fn text(text: impl Into<String>, json: Value) -> Self {
        Report {
            human: Human::Text(text.into()),
            json,
        }
    }

    /// The report of a command that printed its output as it went.
    pub fn printed() -> Self {
        Report {
            human: Human::Printed,
            json: Value::Null,
        }
    }

    /// Prints the report on stdout in `format`.
    pub fn print(&self, format: OutputFormat) {
        if let Human::Printed = self.human {
            return;
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (`galgo … | head`) is not an error worth reporting.
        let _ = match format {
            OutputFormat::Json => writeln!(out, "{}", self.json),
            OutputFormat::Table => writeln!(out, "{}", render(&self.human)),
        };
    }
}

/// Renders the human form.
pub fn render(human: &Human) -> String {
    match human {
        Human::Table { header, rows } => {
            if rows.is_empty() {
                return "(none)".to_owned();
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(header.clone());
            for row in rows {
                table.add_row(row.clone());
            }
            table.to_string()
        }
        Human::Fields(fields) => {
            let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
            fields
                .iter()
                .map(|(name, value)| format!("{name:<width$}  {value}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Human::Text(text) => text.clone(),
        Human::Printed => String::new(),
    }
}

const KIB: f64 = 1024.0;
const SIZE_UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// `1536` → `"1.5 KiB"`.
pub fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= KIB && unit + 1 < SIZE_UNITS.len() {
        value /= KIB;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", SIZE_UNITS[unit])
    }
}

/// Microseconds since the epoch → RFC 3339 in UTC, to the second; 0 is "-".
pub fn human_time(epoch_us: u64) -> String {
    if epoch_us == 0 {
        return "-".to_owned();
    }
    let time = UNIX_EPOCH + Duration::from_micros(epoch_us);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Microseconds → `"1h 30m"`; rounded to whole seconds unless shorter than one.
pub fn human_duration(us: u64) -> String {
    let duration = Duration::from_micros(us);
    let rounded = if duration >= Duration::from_secs(1) {
        Duration::from_secs(duration.as_secs())
    } else {
        Duration::from_millis(duration.as_millis() as u64)
    };
    humantime::format_duration(rounded).to_string()
}

/// Now, in microseconds since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_times_and_durations_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_time(0), "-");
        assert_eq!(human_time(1_700_000_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(human_duration(5_400_000_000), "1h 30m");
        assert_eq!(human_duration(1_500), "1ms");
    }

    #[test]
    fn empty_tables_and_fields_render() {
        let empty = Human::Table {
            header: vec!["id"],
            rows: vec![],
        };
        assert_eq!(render(&empty), "(none)");
        let fields = Human::Fields(vec![("id", "1".into()), ("name", "orders".into())]);
        assert_eq!(render(&fields), "id    1\nname  orders");
    }
}

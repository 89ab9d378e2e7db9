//! Keys that moved to another section. They are still read where they were, with a warning
//! that names the new key, so that an operator's file and scripts keep working across a move.

use super::ConfigError;

/// `(old section, new section, key)`. The limits of every connection, whatever its transport,
/// left `[tcp]` for `[limits]`.
const MOVED_KEYS: [(&str, &str, &str); 4] = [
    ("tcp", "limits", "control_payload_bytes_max"),
    ("tcp", "limits", "send_payload_bytes_max"),
    ("tcp", "limits", "connections_per_shard_max"),
    ("tcp", "limits", "write_timeout_ms"),
];

/// Moves the moved keys found in `table` (one configuration file) to their new section, with
/// a warning for each. A key set in both places is an error: which value holds would be a
/// guess.
pub(super) fn move_keys(
    table: &mut toml::Table,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (old_section, new_section, key) in MOVED_KEYS {
        let Some(toml::Value::Table(old)) = table.get_mut(old_section) else {
            continue;
        };
        let Some(value) = old.remove(key) else {
            continue;
        };
        let new = table
            .entry(new_section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(new) = new else {
            return Err(ConfigError::Invalid(format!(
                "{new_section} is not a section"
            )));
        };
        if new.contains_key(key) {
            return Err(ConfigError::Invalid(format!(
                "{old_section}.{key} and {new_section}.{key} are both set; keep {new_section}.{key}"
            )));
        }
        new.insert(key.to_owned(), value);
        warnings.push(warning(old_section, new_section, key));
    }
    Ok(())
}

/// A `--set section.key=value` with a moved key's old path replaced by its new one.
pub(super) fn rename_assignment(assignment: &str, warnings: &mut Vec<String>) -> String {
    let Some((path, value)) = assignment.split_once('=') else {
        return assignment.to_owned();
    };
    let moved = MOVED_KEYS.iter().find(|(old_section, _, key)| {
        path.trim()
            .strip_prefix(old_section)
            .and_then(|rest| rest.strip_prefix('.'))
            == Some(key)
    });
    match moved {
        Some(&(old_section, new_section, key)) => {
            warnings.push(warning(old_section, new_section, key));
            format!("{new_section}.{key}={value}")
        }
        None => assignment.to_owned(),
    }
}

fn warning(old_section: &str, new_section: &str, key: &str) -> String {
    format!(
        "configuration key {old_section}.{key} is now {new_section}.{key} (it applies to every \
         transport); the old name is still read, but will not be for ever"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_key_moves_to_its_new_section_with_a_warning() {
        let mut table: toml::Table = "[tcp]\nnodelay = true\nwrite_timeout_ms = 500\n"
            .parse()
            .expect("valid TOML");
        let mut warnings = Vec::new();
        move_keys(&mut table, &mut warnings).expect("no conflict");
        assert_eq!(table["limits"]["write_timeout_ms"].as_integer(), Some(500));
        assert!(
            !table["tcp"]
                .as_table()
                .expect("a table")
                .contains_key("write_timeout_ms")
        );
        assert_eq!(table["tcp"]["nodelay"].as_bool(), Some(true));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("limits.write_timeout_ms"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_key_set_in_both_sections_is_refused() {
        let mut table: toml::Table =
            "[tcp]\nwrite_timeout_ms = 500\n[limits]\nwrite_timeout_ms = 600\n"
                .parse()
                .expect("valid TOML");
        assert!(move_keys(&mut table, &mut Vec::new()).is_err());
    }

    #[test]
    fn assignments_are_renamed_and_others_left_alone() {
        let mut warnings = Vec::new();
        assert_eq!(
            rename_assignment("tcp.send_payload_bytes_max=65536", &mut warnings),
            "limits.send_payload_bytes_max=65536"
        );
        assert_eq!(
            rename_assignment("tcp.nodelay=false", &mut warnings),
            "tcp.nodelay=false"
        );
        assert_eq!(
            rename_assignment("tcp.tls.write_timeout_ms=1", &mut warnings),
            "tcp.tls.write_timeout_ms=1"
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("limits.send_payload_bytes_max"));
    }
}

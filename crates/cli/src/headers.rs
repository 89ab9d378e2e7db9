//! User headers of messages (PROTOCOL.md §4.8): typed on the command line as `key=value` (a
//! string) or `key:kind=value`, encoded as the SDK encodes its header map (string keys, in key
//! order), and decoded back for display.
//!
//! ```text
//! repeat: key_kind u8 | key_len u32 | key | value_kind u8 | value_len u32 | value
//! ```

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The byte length every header key and value must have.
const HEADER_FIELD_BYTES: std::ops::RangeInclusive<usize> = 1..=255;

/// HeaderKind codes and names, in code order (1-based).
const KINDS: [&str; 15] = [
    "raw", "string", "bool", "i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "u128",
    "f32", "f64",
];
const KIND_STRING: u8 = 2;

fn kind_code(name: &str) -> Option<u8> {
    KINDS
        .iter()
        .position(|kind| *kind == name)
        .map(|index| index as u8 + 1)
}

fn kind_name(code: u8) -> Option<&'static str> {
    KINDS.get(usize::from(code).checked_sub(1)?).copied()
}

/// One header as typed: `key=value` or `key:kind=value` (kinds: raw (hex), string, bool,
/// i8…i128, u8…u128, f32, f64).
pub fn parse_header(text: &str) -> Result<(String, u8, Vec<u8>), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected key=value or key:kind=value"))?;
    let (key, kind) = match key.rsplit_once(':') {
        Some((key, kind)) => {
            let code = kind_code(kind).ok_or_else(|| {
                format!("unknown header kind {kind:?} (one of {})", KINDS.join(", "))
            })?;
            (key, code)
        }
        None => (key, KIND_STRING),
    };
    let bytes = value_bytes(kind, value).map_err(|why| format!("header {key:?}: {why}"))?;
    if !HEADER_FIELD_BYTES.contains(&key.len()) || !HEADER_FIELD_BYTES.contains(&bytes.len()) {
        return Err(format!(
            "header {key:?}: keys and values are 1 to 255 bytes"
        ));
    }
    Ok((key.to_owned(), kind, bytes))
}

fn value_bytes(kind: u8, value: &str) -> Result<Vec<u8>, String> {
    fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
        value
            .parse()
            .map_err(|_| format!("{value:?} is not a valid number"))
    }
    Ok(match kind_name(kind).expect("known kind") {
        "raw" => hex_decode(value)?,
        "string" => value.as_bytes().to_vec(),
        "bool" => match value {
            "true" => vec![1],
            "false" => vec![0],
            _ => return Err("a bool is true or false".into()),
        },
        "i8" => number::<i8>(value)?.to_le_bytes().to_vec(),
        "i16" => number::<i16>(value)?.to_le_bytes().to_vec(),
        "i32" => number::<i32>(value)?.to_le_bytes().to_vec(),
        "i64" => number::<i64>(value)?.to_le_bytes().to_vec(),
        "i128" => number::<i128>(value)?.to_le_bytes().to_vec(),
        "u8" => number::<u8>(value)?.to_le_bytes().to_vec(),
        "u16" => number::<u16>(value)?.to_le_bytes().to_vec(),
        "u32" => number::<u32>(value)?.to_le_bytes().to_vec(),
        "u64" => number::<u64>(value)?.to_le_bytes().to_vec(),
        "u128" => number::<u128>(value)?.to_le_bytes().to_vec(),
        "f32" => number::<f32>(value)?.to_le_bytes().to_vec(),
        "f64" => number::<f64>(value)?.to_le_bytes().to_vec(),
        other => unreachable!("kind {other} has a parser"),
    })
}

/// Encodes headers as the SDK does (string keys, in key order); a key given twice is refused.
pub fn encode_headers(headers: &[(String, u8, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut sorted = BTreeMap::new();
    for (key, kind, value) in headers {
        if sorted.insert(key.as_str(), (*kind, value)).is_some() {
            return Err(format!("header {key:?} is given twice"));
        }
    }
    let mut out = Vec::new();
    for (key, (kind, value)) in sorted {
        put_field(&mut out, KIND_STRING, key.as_bytes());
        put_field(&mut out, kind, value);
    }
    Ok(out)
}

fn put_field(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes a message's user headers into (key, value) texts; `None` when they are not valid
/// TLV (the server stores whatever a producer sent, so a consumer must not trust them).
pub fn decode_headers(mut bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    while !bytes.is_empty() {
        let (key_kind, key) = take_field(&mut bytes)?;
        let (value_kind, value) = take_field(&mut bytes)?;
        headers.push((show_value(key_kind, key)?, show_value(value_kind, value)?));
    }
    Some(headers)
}

fn take_field<'a>(bytes: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let length = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let value = rest.get(4..4 + length)?;
    *bytes = &rest[4 + length..];
    Some((kind, value))
}

fn show_value(kind: u8, value: &[u8]) -> Option<String> {
    fn le<const N: usize>(value: &[u8]) -> Option<[u8; N]> {
        value.try_into().ok()
    }
    Some(match kind_name(kind)? {
        "raw" => hex_encode(value),
        "string" => String::from_utf8_lossy(value).into_owned(),
        "bool" => (le::<1>(value)?[0] != 0).to_string(),
        "i8" => i8::from_le_bytes(le(value)?).to_string(),
        "i16" => i16::from_le_bytes(le(value)?).to_string(),
        "i32" => i32::from_le_bytes(le(value)?).to_string(),
        "i64" => i64::from_le_bytes(le(value)?).to_string(),
        "i128" => i128::from_le_bytes(le(value)?).to_string(),
        "u8" => u8::from_le_bytes(le(value)?).to_string(),
        "u16" => u16::from_le_bytes(le(value)?).to_string(),
        "u32" => u32::from_le_bytes(le(value)?).to_string(),
        "u64" => u64::from_le_bytes(le(value)?).to_string(),
        "u128" => u128::from_le_bytes(le(value)?).to_string(),
        "f32" => f32::from_le_bytes(le(value)?).to_string(),
        "f64" => f64::from_le_bytes(le(value)?).to_string(),
        _ => return None,
    })
}

/// Headers as a JSON object of texts, or the raw bytes in hex when they are not valid TLV.
pub fn headers_json(bytes: &[u8]) -> Value {
    match decode_headers(bytes) {
        Some(headers) => Value::Object(
            headers
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect(),
        ),
        None => json!({ "raw_hex": hex_encode(bytes) }),
    }
}

/// Lower-case hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hex_decode(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("raw values are hex with an even number of digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|at| {
            u8::from_str_radix(&text[at..at + 2], 16).map_err(|_| format!("{text:?} is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_headers_round_trip_in_key_order() {
        let parsed: Vec<_> = ["zone=eu", "count:u32=7", "ok:bool=true", "blob:raw=00ff"]
            .into_iter()
            .map(|text| parse_header(text).unwrap())
            .collect();
        let bytes = encode_headers(&parsed).unwrap();
        assert_eq!(&bytes[..5], &[KIND_STRING, 4, 0, 0, 0]);
        assert_eq!(&bytes[5..9], b"blob");
        let decoded = decode_headers(&bytes).unwrap();
        let expected = [
            ("blob", "00ff"),
            ("count", "7"),
            ("ok", "true"),
            ("zone", "eu"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(kind_code("raw"), Some(1));
        assert_eq!(kind_code("f64"), Some(15));
    }

    #[test]
    fn bad_headers_are_refused() {
        for text in [
            "novalue",
            "k:u8=300",
            "k:nokind=1",
            "=v",
            "k=",
            "k:raw=0",
            "k:bool=yes",
        ] {
            assert!(parse_header(text).is_err(), "{text}");
        }
        let twice = vec![parse_header("a=1").unwrap(), parse_header("a=2").unwrap()];
        assert!(encode_headers(&twice).is_err());
        assert!(decode_headers(&[2, 9, 0, 0, 0, b'x']).is_none());
    }
}

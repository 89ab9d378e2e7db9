//! Options blocks (PROTOCOL-0.9.md §8.1): the key/value pairs streams, topics and users carry
//! in the 0.9 generation, in exactly the user-header TLV format of PROTOCOL.md §4.8.
//!
//! ```text
//! pair      key_kind u8 = 2 | key_len u32 | key | value_kind u8 | value_len u32 | value
//! request   the block is the tail of the body: pairs until the body ends (empty = no bytes)
//! response  options_len u32 | options_len bytes of pairs
//! ```
//!
//! Limits (the SDK's `validate_options`): at most [`OPTIONS_PAIRS_MAX`] pairs and
//! [`OPTIONS_BYTES_MAX`] bytes, every length in [`OPTION_FIELD_BYTES`], keys of kind String,
//! UTF-8 and unique, no kind 0. Breaking one is 4043 `OptionsBlockTooLarge`; a block cut short
//! is 3 `InvalidCommand`. Value kinds are not checked here: an unknown kind travels on, and
//! only the typed readers below ([`TopicOptions`], [`TopicUpdateOptions`]) judge values, with
//! 4041 `UnsupportedOptionKey` for a key the command does not take and 4042
//! `InvalidOptionValue` for a value of the wrong kind or out of range.

use std::ops::RangeInclusive;

use bytes::{BufMut, BytesMut};

use crate::command::system::{OptionDescription, OptionsScope};
use crate::command::topics::CompressionAlgorithm;
use crate::error::ErrorCode;
use crate::reader::Reader;

/// Most pairs in one block.
pub const OPTIONS_PAIRS_MAX: usize = 1024;
/// Most bytes in one block (without the response's length prefix).
pub const OPTIONS_BYTES_MAX: usize = 100_000;
/// Allowed length of every key and value.
pub const OPTION_FIELD_BYTES: RangeInclusive<usize> = 1..=255;
/// Bytes of a TLV field's kind and length.
const FIELD_HEAD_BYTES: usize = 1 + 4;

/// Value kinds of PROTOCOL.md §4.8 that the option catalogs use.
pub mod kind {
    /// Opaque bytes.
    pub const RAW: u8 = 1;
    /// UTF-8 text; the only kind a key may have.
    pub const STRING: u8 = 2;
    /// One byte, 0 or 1.
    pub const BOOL: u8 = 3;
    /// One byte.
    pub const UINT8: u8 = 9;
    /// Four bytes, little-endian.
    pub const UINT32: u8 = 11;
    /// Eight bytes, little-endian.
    pub const UINT64: u8 = 12;
}

/// One option value: its kind and its bytes (1..=255 of them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptionValue {
    /// The value kind (any non-zero byte; see [`kind`]).
    pub kind: u8,
    /// The encoded value.
    pub bytes: Vec<u8>,
}

impl OptionValue {
    /// A String value. Its length is checked when it joins an [`Options`].
    pub fn string(text: &str) -> Self {
        Self {
            kind: kind::STRING,
            bytes: text.as_bytes().to_vec(),
        }
    }

    /// A Uint64 value.
    pub fn uint64(value: u64) -> Self {
        Self {
            kind: kind::UINT64,
            bytes: value.to_le_bytes().to_vec(),
        }
    }

    /// A Uint32 value.
    pub fn uint32(value: u32) -> Self {
        Self {
            kind: kind::UINT32,
            bytes: value.to_le_bytes().to_vec(),
        }
    }

    /// A Bool value.
    pub fn bool(value: bool) -> Self {
        Self {
            kind: kind::BOOL,
            bytes: vec![u8::from(value)],
        }
    }

    /// The text of a String value; `None` for another kind or invalid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        (self.kind == kind::STRING)
            .then(|| std::str::from_utf8(&self.bytes).ok())
            .flatten()
    }

    fn as_fixed<const N: usize>(&self, wanted: u8) -> Option<[u8; N]> {
        (self.kind == wanted)
            .then(|| <[u8; N]>::try_from(self.bytes.as_slice()).ok())
            .flatten()
    }
}

/// A validated options block: its pairs in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(String, OptionValue)>,
    /// Encoded size, kept so the byte limit is checked as pairs join.
    encoded_len: usize,
}

impl Options {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair, or 4043 `OptionsBlockTooLarge` when it breaks a limit of the block
    /// (lengths, kind 0, a duplicate key, too many pairs or bytes). So a block built here
    /// always encodes to one the peer accepts.
    pub fn push(&mut self, key: &str, value: OptionValue) -> Result<(), ErrorCode> {
        if self.get(key).is_some() {
            return Err(ErrorCode::OptionsBlockTooLarge);
        }
        self.append(key, value)
    }

    /// [`Options::push`] without the duplicate check, which the decoder does once for the
    /// whole block (a linear check per pair would be quadratic in a hostile block).
    fn append(&mut self, key: &str, value: OptionValue) -> Result<(), ErrorCode> {
        let fits = OPTION_FIELD_BYTES.contains(&key.len())
            && OPTION_FIELD_BYTES.contains(&value.bytes.len())
            && value.kind != 0;
        let encoded_len = self.encoded_len + 2 * FIELD_HEAD_BYTES + key.len() + value.bytes.len();
        if !fits || self.entries.len() == OPTIONS_PAIRS_MAX || encoded_len > OPTIONS_BYTES_MAX {
            return Err(ErrorCode::OptionsBlockTooLarge);
        }
        self.entries.push((key.to_owned(), value));
        self.encoded_len = encoded_len;
        Ok(())
    }

    fn has_duplicate_keys(&self) -> bool {
        let mut keys: Vec<&str> = self.entries.iter().map(|(key, _)| key.as_str()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|pair| pair[0] == pair[1])
    }

    /// The value of `key`, if the block has it.
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.entries
            .iter()
            .find(|(entry, _)| entry == key)
            .map(|(_, value)| value)
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for a block without pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the block without a length prefix.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// 4041 `UnsupportedOptionKey` when the block has any pair: the form of every command
    /// whose catalog is still empty (CreateStream, UpdateStream, CreateUser, UpdateUser).
    pub fn reject_any_key(&self) -> Result<(), ErrorCode> {
        match self.is_empty() {
            true => Ok(()),
            false => Err(ErrorCode::UnsupportedOptionKey),
        }
    }

    /// Reads a request's block: `bytes` is the rest of the body, all of it pairs.
    pub fn decode_tail(bytes: &[u8]) -> Result<Self, ErrorCode> {
        if bytes.len() > OPTIONS_BYTES_MAX {
            return Err(ErrorCode::OptionsBlockTooLarge);
        }
        let mut reader = Reader::new(bytes);
        let mut options = Self::new();
        while !reader.is_empty() {
            let (key_kind, key) = read_field(&mut reader)?;
            // A key with nothing after it is an odd number of fields, which the SDK reports as
            // a broken block rather than a short one.
            if reader.is_empty() {
                return Err(ErrorCode::OptionsBlockTooLarge);
            }
            let (value_kind, value) = read_field(&mut reader)?;
            let key = match (key_kind, std::str::from_utf8(key)) {
                (kind::STRING, Ok(key)) => key,
                _ => return Err(ErrorCode::OptionsBlockTooLarge),
            };
            let value = OptionValue {
                kind: value_kind,
                bytes: value.to_vec(),
            };
            options.append(key, value)?;
        }
        if options.has_duplicate_keys() {
            return Err(ErrorCode::OptionsBlockTooLarge);
        }
        Ok(options)
    }

    /// Reads a response's block: `options_len u32`, then the pairs.
    pub fn decode_prefixed(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let len = reader.u32()?;
        let len = usize::try_from(len).map_err(|_| ErrorCode::InvalidCommand)?;
        Self::decode_tail(reader.bytes(len)?)
    }

    /// Appends the pairs (a request's tail).
    pub fn encode_tail(&self, out: &mut BytesMut) {
        for (key, value) in &self.entries {
            out.put_u8(kind::STRING);
            out.put_u32_le(key.len() as u32);
            out.put_slice(key.as_bytes());
            out.put_u8(value.kind);
            out.put_u32_le(value.bytes.len() as u32);
            out.put_slice(&value.bytes);
        }
    }

    /// Appends `options_len u32` and the pairs (a response's block).
    pub fn encode_prefixed(&self, out: &mut BytesMut) {
        out.put_u32_le(self.encoded_len as u32);
        self.encode_tail(out);
    }
}

const _: () = assert!(OPTIONS_BYTES_MAX <= u32::MAX as usize);

/// Reads one TLV field: a non-zero kind and 1..=255 bytes.
fn read_field<'a>(reader: &mut Reader<'a>) -> Result<(u8, &'a [u8]), ErrorCode> {
    let field_kind = reader.u8()?;
    let len = reader.u32()?;
    if field_kind == 0 || !OPTION_FIELD_BYTES.contains(&(len as usize)) {
        return Err(ErrorCode::OptionsBlockTooLarge);
    }
    Ok((field_kind, reader.bytes(len as usize)?))
}

/// The keys of the topic catalog (`iggy_common` 0.11.0 `topic_option_keys`).
pub mod topic_keys {
    /// `none` or `gzip` (String), or the compression code (Uint8).
    pub const COMPRESSION_ALGORITHM: &str = "compression_algorithm";
    /// µs (Uint64; `u64::MAX` never, 0 the server default) or humantime text.
    pub const MESSAGE_EXPIRY: &str = "message_expiry";
    /// Bytes (Uint64; `u64::MAX` unlimited, 0 the server default) or byte-size text.
    pub const MAX_TOPIC_SIZE: &str = "max_topic_size";
    /// Bytes per segment (Uint64 or byte-size text), a 512-byte multiple.
    pub const SEGMENT_SIZE: &str = "segment_size";
    /// `replicated` or `persisted` (String).
    pub const DURABILITY: &str = "durability";
    /// `replicated` or `persisted` (String), for stored consumer offsets.
    pub const CONSUMER_OFFSET_DURABILITY: &str = "consumer_offset_durability";
    /// Flush after this many messages (Uint32 or decimal text), non-zero.
    pub const MESSAGES_REQUIRED_TO_SAVE: &str = "messages_required_to_save";
    /// Flush after this many bytes (Uint64 or byte-size text).
    pub const SIZE_OF_MESSAGES_REQUIRED_TO_SAVE: &str = "size_of_messages_required_to_save";
    /// Reserve segment files up front (Bool, or `true` / `false`).
    pub const PREALLOCATE_SEGMENTS: &str = "preallocate_segments";
}

/// Smallest `segment_size` a topic may ask for.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 1024 * 1024;
/// Largest `segment_size` a topic may ask for.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// `segment_size` must be a multiple of this.
pub const SEGMENT_SIZE_ALIGN_BYTES: u64 = 512;
/// Largest `messages_required_to_save`.
pub const MESSAGES_REQUIRED_TO_SAVE_MAX: u32 = 16 * 1024 * 1024;
/// Largest `size_of_messages_required_to_save`.
pub const SIZE_OF_MESSAGES_REQUIRED_TO_SAVE_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Longest humantime `message_expiry`, in seconds (the SDK's `IggyExpiry` bound).
pub const MESSAGE_EXPIRY_TEXT_SECONDS_MAX: u64 = u32::MAX as u64;

const _: () = assert!(SEGMENT_SIZE_BYTES_MIN.is_multiple_of(SEGMENT_SIZE_ALIGN_BYTES));
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX.is_multiple_of(SEGMENT_SIZE_ALIGN_BYTES));

/// When a message (or a stored offset) counts as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Acknowledged once replicated (the default).
    #[default]
    Replicated,
    /// Acknowledged once on stable storage.
    Persisted,
}

impl Durability {
    /// The option text.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Replicated => "replicated",
            Durability::Persisted => "persisted",
        }
    }

    fn parse(value: &OptionValue) -> Option<Self> {
        let text = value.as_str()?;
        [Durability::Replicated, Durability::Persisted]
            .into_iter()
            .find(|durability| durability.as_str().eq_ignore_ascii_case(text))
    }
}

/// A CreateTopic options block read against the topic catalog. `None` means the client did
/// not send the key; values are as sent (0 keeps its 0.8 meaning "the server default").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TopicOptions {
    pub compression: Option<CompressionAlgorithm>,
    pub message_expiry_us: Option<u64>,
    pub max_topic_size_bytes: Option<u64>,
    /// A value of 0 reads as absent, as in the SDK.
    pub segment_size_bytes: Option<u64>,
    pub durability: Option<Durability>,
    pub consumer_offset_durability: Option<Durability>,
    pub messages_required_to_save: Option<u32>,
    /// A value of 0 reads as absent, as in the SDK.
    pub size_of_messages_required_to_save_bytes: Option<u64>,
    pub preallocate_segments: Option<bool>,
}

impl TopicOptions {
    /// Reads every pair: a key outside the catalog is 4041, a bad value 4042.
    pub fn parse(options: &Options) -> Result<Self, ErrorCode> {
        let mut parsed = Self::default();
        for (key, value) in options.iter() {
            parsed.absorb(key, value)?;
        }
        Ok(parsed)
    }

    fn absorb(&mut self, key: &str, value: &OptionValue) -> Result<(), ErrorCode> {
        use topic_keys::*;
        let invalid = ErrorCode::InvalidOptionValue;
        match key {
            COMPRESSION_ALGORITHM => self.compression = Some(compression(value)?),
            MESSAGE_EXPIRY => self.message_expiry_us = Some(message_expiry(value)?),
            MAX_TOPIC_SIZE => self.max_topic_size_bytes = Some(max_topic_size(value)?),
            SEGMENT_SIZE => {
                let size = byte_size(value)?;
                let in_range = (SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&size)
                    && size.is_multiple_of(SEGMENT_SIZE_ALIGN_BYTES);
                if size != 0 && !in_range {
                    return Err(invalid);
                }
                self.segment_size_bytes = (size != 0).then_some(size);
            }
            DURABILITY => self.durability = Some(Durability::parse(value).ok_or(invalid)?),
            CONSUMER_OFFSET_DURABILITY => {
                self.consumer_offset_durability = Some(Durability::parse(value).ok_or(invalid)?);
            }
            MESSAGES_REQUIRED_TO_SAVE => {
                let count = uint32(value)?;
                if !(1..=MESSAGES_REQUIRED_TO_SAVE_MAX).contains(&count) {
                    return Err(invalid);
                }
                self.messages_required_to_save = Some(count);
            }
            SIZE_OF_MESSAGES_REQUIRED_TO_SAVE => {
                let size = byte_size(value)?;
                if size > SIZE_OF_MESSAGES_REQUIRED_TO_SAVE_BYTES_MAX {
                    return Err(invalid);
                }
                self.size_of_messages_required_to_save_bytes = (size != 0).then_some(size);
            }
            PREALLOCATE_SEGMENTS => self.preallocate_segments = Some(boolean(value)?),
            _ => return Err(ErrorCode::UnsupportedOptionKey),
        }
        Ok(())
    }

    /// The block a client sends for these options, in the SDK's canonical kinds and sorted
    /// key order.
    pub fn to_options(&self) -> Options {
        use topic_keys::*;
        let mut pairs: Vec<(&str, OptionValue)> = Vec::new();
        let durability = |value: Durability| OptionValue::string(value.as_str());
        pairs.extend(
            self.compression
                .map(|c| (COMPRESSION_ALGORITHM, compression_value(c))),
        );
        pairs.extend(
            self.message_expiry_us
                .map(|v| (MESSAGE_EXPIRY, OptionValue::uint64(v))),
        );
        pairs.extend(
            self.max_topic_size_bytes
                .map(|v| (MAX_TOPIC_SIZE, OptionValue::uint64(v))),
        );
        pairs.extend(
            self.segment_size_bytes
                .map(|v| (SEGMENT_SIZE, OptionValue::uint64(v))),
        );
        pairs.extend(self.durability.map(|v| (DURABILITY, durability(v))));
        pairs.extend(
            self.consumer_offset_durability
                .map(|v| (CONSUMER_OFFSET_DURABILITY, durability(v))),
        );
        pairs.extend(
            self.messages_required_to_save
                .map(|v| (MESSAGES_REQUIRED_TO_SAVE, OptionValue::uint32(v))),
        );
        pairs.extend(
            self.size_of_messages_required_to_save_bytes
                .map(|v| (SIZE_OF_MESSAGES_REQUIRED_TO_SAVE, OptionValue::uint64(v))),
        );
        pairs.extend(
            self.preallocate_segments
                .map(|v| (PREALLOCATE_SEGMENTS, OptionValue::bool(v))),
        );
        sorted_options(pairs)
    }
}

/// An UpdateTopic options block: only the three keys an update may patch (any other key is
/// 4041). `None` keeps the topic's current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TopicUpdateOptions {
    pub compression: Option<CompressionAlgorithm>,
    pub message_expiry_us: Option<u64>,
    pub max_topic_size_bytes: Option<u64>,
}

impl TopicUpdateOptions {
    /// Reads every pair: a key an update does not take is 4041, a bad value 4042.
    pub fn parse(options: &Options) -> Result<Self, ErrorCode> {
        use topic_keys::*;
        let mut parsed = Self::default();
        for (key, value) in options.iter() {
            match key {
                COMPRESSION_ALGORITHM => parsed.compression = Some(compression(value)?),
                MESSAGE_EXPIRY => parsed.message_expiry_us = Some(message_expiry(value)?),
                MAX_TOPIC_SIZE => parsed.max_topic_size_bytes = Some(max_topic_size(value)?),
                _ => return Err(ErrorCode::UnsupportedOptionKey),
            }
        }
        Ok(parsed)
    }

    /// The block a client sends, canonical kinds, sorted keys.
    pub fn to_options(&self) -> Options {
        TopicOptions {
            compression: self.compression,
            message_expiry_us: self.message_expiry_us,
            max_topic_size_bytes: self.max_topic_size_bytes,
            ..TopicOptions::default()
        }
        .to_options()
    }
}

/// The topic fields a reply's `derived_options` block reports: what the server resolved, in
/// canonical kinds (compression as text, sizes and expiry as Uint64).
pub fn derived_topic_options(
    compression: CompressionAlgorithm,
    message_expiry_us: u64,
    max_topic_size_bytes: u64,
) -> Options {
    TopicOptions {
        compression: Some(compression),
        message_expiry_us: Some(message_expiry_us),
        max_topic_size_bytes: Some(max_topic_size_bytes),
        ..TopicOptions::default()
    }
    .to_options()
}

fn sorted_options(mut pairs: Vec<(&str, OptionValue)>) -> Options {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut options = Options::new();
    for (key, value) in pairs {
        // Catalog keys are short, unique and their values small: a block of them always fits.
        options
            .push(key, value)
            .expect("catalog options fit a block");
    }
    options
}

fn compression_name(compression: CompressionAlgorithm) -> &'static str {
    match compression {
        CompressionAlgorithm::None => "none",
        CompressionAlgorithm::Gzip => "gzip",
    }
}

fn compression_value(compression: CompressionAlgorithm) -> OptionValue {
    OptionValue::string(compression_name(compression))
}

fn compression(value: &OptionValue) -> Result<CompressionAlgorithm, ErrorCode> {
    let by_code = |code: u8| match code {
        1 => Some(CompressionAlgorithm::None),
        2 => Some(CompressionAlgorithm::Gzip),
        _ => None,
    };
    let by_name = |text: &str| {
        [CompressionAlgorithm::None, CompressionAlgorithm::Gzip]
            .into_iter()
            .find(|&algorithm| compression_name(algorithm).eq_ignore_ascii_case(text))
    };
    value
        .as_fixed::<1>(kind::UINT8)
        .and_then(|[code]| by_code(code))
        .or_else(|| value.as_str().and_then(by_name))
        .ok_or(ErrorCode::InvalidOptionValue)
}

fn uint32(value: &OptionValue) -> Result<u32, ErrorCode> {
    value
        .as_fixed::<4>(kind::UINT32)
        .map(u32::from_le_bytes)
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
        .ok_or(ErrorCode::InvalidOptionValue)
}

/// A Uint64 as sent, or text read by `from_text`.
fn uint64_or(
    value: &OptionValue,
    from_text: impl Fn(&str) -> Option<u64>,
) -> Result<u64, ErrorCode> {
    value
        .as_fixed::<8>(kind::UINT64)
        .map(u64::from_le_bytes)
        .or_else(|| value.as_str().and_then(from_text))
        .ok_or(ErrorCode::InvalidOptionValue)
}

fn byte_size(value: &OptionValue) -> Result<u64, ErrorCode> {
    uint64_or(value, parse_byte_size)
}

/// `message_expiry` text, as the SDK's `IggyExpiry::from_str` reads it.
fn message_expiry(value: &OptionValue) -> Result<u64, ErrorCode> {
    uint64_or(value, |text| match text {
        "unlimited" | "none" | "None" | "Unlimited" | "never_expire" => Some(u64::MAX),
        "default" | "server_default" | "Default" | "Server_default" => Some(0),
        text => parse_duration_us(text),
    })
}

/// `max_topic_size` text, as the SDK's `MaxTopicSize::from_str` reads it.
fn max_topic_size(value: &OptionValue) -> Result<u64, ErrorCode> {
    uint64_or(value, |text| match text {
        "unlimited" => Some(u64::MAX),
        "server_default" => Some(0),
        text => parse_byte_size(text),
    })
}

fn boolean(value: &OptionValue) -> Result<bool, ErrorCode> {
    match (value.kind, value.bytes.as_slice()) {
        (kind::BOOL, [0]) => Ok(false),
        (kind::BOOL, [1]) => Ok(true),
        _ => value
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or(ErrorCode::InvalidOptionValue),
    }
}

/// Reads byte-size text the way the SDK's `IggyByteSize` (crate `byte-unit`) does: a decimal
/// number, optional spaces, and a unit: none or `B` (bytes), `b`/`bit(s)` (bits), or a prefix
/// `K M G T P E` (case-insensitive; decimal, or binary with `i`) followed by `B`, `b` or
/// nothing (bytes). `0`, `none` and `unlimited` read as 0. A fraction of a byte is dropped.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    if matches!(text, "0" | "unlimited" | "Unlimited" | "none" | "None") {
        return Some(0);
    }
    let (mantissa, scale, rest) = parse_decimal(text)?;
    let (multiplier, bits) = byte_unit(rest.trim_start_matches(' '))?;
    let bytes = mantissa.checked_mul(multiplier)? / 10u128.pow(scale) / if bits { 8 } else { 1 };
    u64::try_from(bytes).ok()
}

/// Most fraction digits kept from a decimal; later ones are dropped.
const FRACTION_DIGITS_MAX: u32 = 18;

/// A leading decimal number as `(digits without the point, fraction digits kept, rest)`.
fn parse_decimal(text: &str) -> Option<(u128, u32, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let fraction_malformed = number.contains('.') && fraction.is_empty();
    if whole.is_empty() || fraction_malformed || fraction.contains('.') {
        return None;
    }
    let kept = &fraction[..fraction.len().min(FRACTION_DIGITS_MAX as usize)];
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(kept.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(digit - b'0'))?;
    }
    Some((mantissa, kept.len() as u32, rest))
}

/// The multiplier of a byte-size unit and whether it counts bits.
fn byte_unit(unit: &str) -> Option<(u128, bool)> {
    let mut chars = unit.chars();
    let Some(first) = chars.next() else {
        return Some((1, false));
    };
    let rest = chars.as_str();
    if first.eq_ignore_ascii_case(&'b') {
        return Some((1, bits_suffix(first, rest)?));
    }
    let power = "KMGTPE".find(first.to_ascii_uppercase())? as u32 + 1;
    let (binary, rest) = match rest.strip_prefix(['i', 'I']) {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let bits = match rest.chars().next() {
        None => false,
        Some(b @ ('b' | 'B')) => bits_suffix(b, &rest[1..])?,
        Some(_) => return None,
    };
    let base: u128 = if binary { 1024 } else { 1000 };
    Some((base.pow(power), bits))
}

/// After the `B`/`b` of a unit: nothing (bits when the letter was `b`), or `it`/`its` (bits).
fn bits_suffix(letter: char, rest: &str) -> Option<bool> {
    match rest.to_ascii_lowercase().as_str() {
        "" => Some(letter == 'b'),
        "it" | "its" => Some(true),
        _ => None,
    }
}

/// Reads humantime duration text (`7 days`, `1h 30m`, `500ms`) into µs, as the SDK does for
/// `message_expiry`: a sequence of `<integer><unit>` with optional spaces. Fractions are not
/// accepted (the SDK takes them; no SDK sends them). Longer than
/// [`MESSAGE_EXPIRY_TEXT_SECONDS_MAX`] is rejected.
pub fn parse_duration_us(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let value: u128 = digits.parse().ok()?;
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| !(c.is_ascii_alphabetic() || c == 'µ'))
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        total_ns = total_ns.checked_add(value.checked_mul(unit_ns(unit)?)?)?;
        rest = after.trim_start();
    }
    let seconds = total_ns / NANOS_PER_SECOND;
    (seconds <= u128::from(MESSAGE_EXPIRY_TEXT_SECONDS_MAX))
        .then(|| u64::try_from(total_ns / NANOS_PER_MICRO).ok())
        .flatten()
}

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Nanoseconds in one humantime unit (a month is 30.44 days, a year 365.25 days).
fn unit_ns(unit: &str) -> Option<u128> {
    let seconds: u128 = match unit {
        "nanos" | "nsec" | "ns" => return Some(1),
        "usec" | "us" | "µs" => return Some(NANOS_PER_MICRO),
        "millis" | "msec" | "ms" => return Some(1_000_000),
        "seconds" | "second" | "secs" | "sec" | "s" => 1,
        "minutes" | "minute" | "min" | "mins" | "m" => 60,
        "hours" | "hour" | "hr" | "hrs" | "h" => 3_600,
        "days" | "day" | "d" => 86_400,
        "weeks" | "week" | "wk" | "wks" | "w" => 604_800,
        "months" | "month" | "M" => 2_630_016,
        "years" | "year" | "y" => 31_557_600,
        _ => return None,
    };
    Some(seconds * NANOS_PER_SECOND)
}

/// Defaults of the topic catalog, as DescribeOptions reports them.
const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_MESSAGES_REQUIRED_TO_SAVE: u32 = 1024;
const DEFAULT_SIZE_OF_MESSAGES_REQUIRED_TO_SAVE_BYTES: u64 = 1024 * 1024;

/// The option catalog of a scope, for the DescribeOptions reply. Streams and users have no
/// keys yet; topics have the nine of [`topic_keys`], each with its default in its canonical
/// kind.
pub fn describe(scope: OptionsScope) -> Vec<OptionDescription> {
    use topic_keys::*;
    if scope != OptionsScope::Topic {
        return Vec::new();
    }
    let entry = |key: &str, value: OptionValue, description: &str| OptionDescription {
        key: key.to_owned(),
        kind: value.kind,
        default_value: value.bytes,
        description: description.to_owned(),
    };
    let replicated = || OptionValue::string(Durability::Replicated.as_str());
    vec![
        entry(
            COMPRESSION_ALGORITHM,
            OptionValue::string("none"),
            "none or gzip",
        ),
        entry(
            MESSAGE_EXPIRY,
            OptionValue::uint64(u64::MAX),
            "message expiry in µs",
        ),
        entry(
            MAX_TOPIC_SIZE,
            OptionValue::uint64(u64::MAX),
            "topic size cap in bytes",
        ),
        entry(
            SEGMENT_SIZE,
            OptionValue::uint64(DEFAULT_SEGMENT_SIZE_BYTES),
            "bytes per segment",
        ),
        entry(DURABILITY, replicated(), "replicated or persisted"),
        entry(
            CONSUMER_OFFSET_DURABILITY,
            replicated(),
            "replicated or persisted",
        ),
        entry(
            MESSAGES_REQUIRED_TO_SAVE,
            OptionValue::uint32(DEFAULT_MESSAGES_REQUIRED_TO_SAVE),
            "flush after this many messages",
        ),
        entry(
            SIZE_OF_MESSAGES_REQUIRED_TO_SAVE,
            OptionValue::uint64(DEFAULT_SIZE_OF_MESSAGES_REQUIRED_TO_SAVE_BYTES),
            "flush after this many bytes",
        ),
        entry(
            PREALLOCATE_SEGMENTS,
            OptionValue::bool(false),
            "reserve segment files up front",
        ),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Appends one raw TLV field, whatever its values, to build blocks the encoder refuses.
    fn field(out: &mut Vec<u8>, field_kind: u8, bytes: &[u8]) {
        out.push(field_kind);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }

    fn block(pairs: &[(u8, &[u8], u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(key_kind, key, value_kind, value) in pairs {
            field(&mut out, key_kind, key);
            field(&mut out, value_kind, value);
        }
        out
    }

    fn encoded_tail(options: &Options) -> Vec<u8> {
        let mut out = BytesMut::new();
        options.encode_tail(&mut out);
        out.to_vec()
    }

    #[test]
    fn a_block_is_user_header_tlv() {
        let mut options = Options::new();
        options
            .push("preallocate_segments", OptionValue::bool(true))
            .unwrap();
        options
            .push("segment_size", OptionValue::uint64(1 << 30))
            .unwrap();
        options
            .push("durability", OptionValue::string("persisted"))
            .unwrap();
        let bytes = encoded_tail(&options);
        #[rustfmt::skip]
        let head = [2, 20, 0, 0, 0];
        assert_eq!(&bytes[..5], head);
        assert_eq!(&bytes[5..25], b"preallocate_segments");
        assert_eq!(&bytes[25..31], [3, 1, 0, 0, 0, 1]);
        assert_eq!(&bytes[31..48], b"\x02\x0c\x00\x00\x00segment_size");
        assert_eq!(&bytes[48..61], [12, 8, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0]);
        assert_eq!(bytes.len(), options.encoded_len());
        assert_eq!(bytes.len(), 61 + 15 + 14);
        assert_eq!(Options::decode_tail(&bytes), Ok(options.clone()));

        let mut prefixed = BytesMut::new();
        options.encode_prefixed(&mut prefixed);
        assert_eq!(&prefixed[..4], (bytes.len() as u32).to_le_bytes());
        let mut reader = Reader::new(&prefixed);
        assert_eq!(Options::decode_prefixed(&mut reader), Ok(options));
        assert!(reader.is_empty());
        for cut in 0..prefixed.len() {
            assert!(Options::decode_prefixed(&mut Reader::new(&prefixed[..cut])).is_err());
        }
    }

    #[test]
    fn empty_blocks() {
        assert_eq!(Options::decode_tail(&[]), Ok(Options::new()));
        assert_eq!(
            Options::decode_prefixed(&mut Reader::new(&[0, 0, 0, 0])),
            Ok(Options::new())
        );
        assert_eq!(Options::new().reject_any_key(), Ok(()));
        let one = Options::decode_tail(&block(&[(2, b"k", 2, b"v")])).unwrap();
        assert_eq!(one.reject_any_key(), Err(ErrorCode::UnsupportedOptionKey));
        assert_eq!(one.get("k").and_then(OptionValue::as_str), Some("v"));
        // Unknown value kinds travel on.
        assert_eq!(
            Options::decode_tail(&block(&[(2, b"k", 200, b"?")])).map(|o| o.len()),
            Ok(1)
        );
    }

    #[test]
    fn broken_blocks_are_4043_and_short_ones_3() {
        let too_large = Err(ErrorCode::OptionsBlockTooLarge);
        let decode = |bytes: &[u8]| Options::decode_tail(bytes);
        assert_eq!(
            decode(&block(&[(2, b"k", 2, b"a"), (2, b"k", 2, b"b")])),
            too_large
        );
        assert_eq!(decode(&block(&[(12, b"k", 2, b"v")])), too_large);
        assert_eq!(decode(&block(&[(2, &[0xff], 2, b"v")])), too_large);
        assert_eq!(decode(&block(&[(2, b"k", 0, b"v")])), too_large);
        assert_eq!(decode(&block(&[(2, b"k", 2, b"")])), too_large);
        assert_eq!(decode(&block(&[(2, &[b'k'; 256], 2, b"v")])), too_large);
        assert!(decode(&block(&[(2, &[b'k'; 255], 2, b"v")])).is_ok());
        let mut odd = Vec::new();
        field(&mut odd, 2, b"key");
        assert_eq!(decode(&odd), too_large);
        let whole = block(&[(2, b"segment_size", 2, b"1 GiB")]);
        for cut in 1..whole.len() {
            assert!(decode(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode(&whole[..whole.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn pair_and_byte_limits() {
        let keys: Vec<String> = (0..=OPTIONS_PAIRS_MAX)
            .map(|i| format!("key_{i}"))
            .collect();
        let pairs: Vec<_> = keys
            .iter()
            .map(|k| (2, k.as_bytes(), 2, &b"v"[..]))
            .collect();
        assert_eq!(
            Options::decode_tail(&block(&pairs)),
            Err(ErrorCode::OptionsBlockTooLarge)
        );
        let at_limit = Options::decode_tail(&block(&pairs[..OPTIONS_PAIRS_MAX]));
        assert_eq!(at_limit.map(|o| o.len()), Ok(OPTIONS_PAIRS_MAX));

        let long_keys: Vec<String> = (0..200).map(|i| format!("{i:0>255}")).collect();
        let value = [b'v'; 255];
        let pairs: Vec<_> = long_keys
            .iter()
            .map(|k| (2, k.as_bytes(), 2, &value[..]))
            .collect();
        let bytes = block(&pairs);
        assert!(bytes.len() > OPTIONS_BYTES_MAX);
        assert_eq!(
            Options::decode_tail(&bytes),
            Err(ErrorCode::OptionsBlockTooLarge)
        );
        let mut built = Options::new();
        let pushed = long_keys
            .iter()
            .map(|key| {
                built.push(
                    key,
                    OptionValue {
                        kind: 2,
                        bytes: value.to_vec(),
                    },
                )
            })
            .take_while(Result::is_ok)
            .count();
        assert!(pushed < 200 && built.encoded_len() <= OPTIONS_BYTES_MAX);
        let again = OptionValue {
            kind: 2,
            bytes: b"v".to_vec(),
        };
        assert_eq!(
            built.push(&long_keys[0], again),
            Err(ErrorCode::OptionsBlockTooLarge)
        );
    }

    fn topic(pairs: &[(&str, OptionValue)]) -> Result<TopicOptions, ErrorCode> {
        let mut options = Options::new();
        for (key, value) in pairs {
            options.push(key, value.clone())?;
        }
        TopicOptions::parse(&options)
    }

    #[test]
    fn topic_catalog_reads_every_key() {
        use topic_keys::*;
        let parsed = topic(&[
            (COMPRESSION_ALGORITHM, OptionValue::string("GZIP")),
            (MESSAGE_EXPIRY, OptionValue::string("7 days")),
            (MAX_TOPIC_SIZE, OptionValue::string("1 GiB")),
            (SEGMENT_SIZE, OptionValue::uint64(128 << 20)),
            (DURABILITY, OptionValue::string("persisted")),
            (
                CONSUMER_OFFSET_DURABILITY,
                OptionValue::string("Replicated"),
            ),
            (MESSAGES_REQUIRED_TO_SAVE, OptionValue::string("500")),
            (
                SIZE_OF_MESSAGES_REQUIRED_TO_SAVE,
                OptionValue::string("2MiB"),
            ),
            (PREALLOCATE_SEGMENTS, OptionValue::string("true")),
        ]);
        let expected = TopicOptions {
            compression: Some(CompressionAlgorithm::Gzip),
            message_expiry_us: Some(7 * 86_400 * 1_000_000),
            max_topic_size_bytes: Some(1 << 30),
            segment_size_bytes: Some(128 << 20),
            durability: Some(Durability::Persisted),
            consumer_offset_durability: Some(Durability::Replicated),
            messages_required_to_save: Some(500),
            size_of_messages_required_to_save_bytes: Some(2 << 20),
            preallocate_segments: Some(true),
        };
        assert_eq!(parsed, Ok(expected));
        assert_eq!(TopicOptions::parse(&expected.to_options()), Ok(expected));
        assert_eq!(topic(&[]), Ok(TopicOptions::default()));
    }

    #[test]
    fn topic_catalog_refuses_unknown_keys_and_bad_values() {
        use topic_keys::*;
        let invalid = Err(ErrorCode::InvalidOptionValue);
        assert_eq!(
            topic(&[("retention", OptionValue::uint64(1))]),
            Err(ErrorCode::UnsupportedOptionKey)
        );
        assert_eq!(
            topic(&[(COMPRESSION_ALGORITHM, OptionValue::string("zstd"))]),
            invalid
        );
        assert_eq!(
            topic(&[(
                COMPRESSION_ALGORITHM,
                OptionValue {
                    kind: kind::UINT8,
                    bytes: vec![3]
                }
            )]),
            invalid
        );
        assert_eq!(topic(&[(MESSAGE_EXPIRY, OptionValue::uint32(5))]), invalid);
        assert_eq!(
            topic(&[(MESSAGE_EXPIRY, OptionValue::string("200 years"))]),
            invalid
        );
        assert_eq!(
            topic(&[(SEGMENT_SIZE, OptionValue::uint64((1 << 20) + 1))]),
            invalid
        );
        assert_eq!(
            topic(&[(SEGMENT_SIZE, OptionValue::uint64(2 << 30))]),
            invalid
        );
        assert_eq!(
            topic(&[(DURABILITY, OptionValue::string("eventually"))]),
            invalid
        );
        assert_eq!(
            topic(&[(MESSAGES_REQUIRED_TO_SAVE, OptionValue::uint32(0))]),
            invalid
        );
        assert_eq!(
            topic(&[(
                SIZE_OF_MESSAGES_REQUIRED_TO_SAVE,
                OptionValue::string("2 GiB")
            )]),
            invalid
        );
        assert_eq!(
            topic(&[(
                PREALLOCATE_SEGMENTS,
                OptionValue {
                    kind: kind::BOOL,
                    bytes: vec![2]
                }
            )]),
            invalid
        );
        // Zero sizes read as absent, as in the SDK.
        assert_eq!(
            topic(&[(SEGMENT_SIZE, OptionValue::uint64(0))]),
            Ok(TopicOptions::default())
        );
        let compression_code = OptionValue {
            kind: kind::UINT8,
            bytes: vec![2],
        };
        assert_eq!(
            topic(&[(COMPRESSION_ALGORITHM, compression_code)]).map(|t| t.compression),
            Ok(Some(CompressionAlgorithm::Gzip))
        );
    }

    #[test]
    fn update_takes_three_keys() {
        use topic_keys::*;
        let mut options = Options::new();
        options
            .push(MAX_TOPIC_SIZE, OptionValue::string("unlimited"))
            .unwrap();
        options
            .push(MESSAGE_EXPIRY, OptionValue::string("none"))
            .unwrap();
        let update = TopicUpdateOptions::parse(&options);
        let expected = TopicUpdateOptions {
            compression: None,
            message_expiry_us: Some(u64::MAX),
            max_topic_size_bytes: Some(u64::MAX),
        };
        assert_eq!(update, Ok(expected));
        assert_eq!(
            TopicUpdateOptions::parse(&expected.to_options()),
            Ok(expected)
        );
        options
            .push(SEGMENT_SIZE, OptionValue::uint64(1 << 30))
            .unwrap();
        assert_eq!(
            TopicUpdateOptions::parse(&options),
            Err(ErrorCode::UnsupportedOptionKey)
        );
        let derived = derived_topic_options(CompressionAlgorithm::None, 5, 6);
        let keys: Vec<_> = derived.iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [COMPRESSION_ALGORITHM, MAX_TOPIC_SIZE, MESSAGE_EXPIRY]
        );
    }

    #[test]
    fn byte_sizes_read_like_byte_unit() {
        for (text, bytes) in [
            ("0", Some(0)),
            ("none", Some(0)),
            ("1024", Some(1024)),
            ("1 KB", Some(1000)),
            ("1KiB", Some(1024)),
            ("1 k", Some(1000)),
            ("1 Gi", Some(1 << 30)),
            ("1.5 MiB", Some(3 << 19)),
            ("8 b", Some(1)),
            ("16 bits", Some(2)),
            ("2 Mb", Some(250_000)),
            ("1 EiB", Some(1 << 60)),
            ("16 EiB", None),
            ("1 XB", None),
            ("MiB", None),
            ("1.", None),
            ("", None),
        ] {
            assert_eq!(parse_byte_size(text), bytes, "{text}");
        }
    }

    #[test]
    fn durations_read_like_humantime() {
        for (text, us) in [
            ("7 days", Some(604_800_000_000)),
            ("1h 30m", Some(5_400_000_000)),
            ("1h30m", Some(5_400_000_000)),
            ("500ms", Some(500_000)),
            ("15us", Some(15)),
            ("1 M", Some(2_630_016_000_000)),
            ("136 years", Some(4_291_833_600_000_000)),
            ("137 years", None),
            ("1.5h", None),
            ("10", None),
            ("h", None),
            ("", None),
        ] {
            assert_eq!(parse_duration_us(text), us, "{text}");
        }
    }

    #[test]
    fn the_topic_catalog_describes_its_keys() {
        let catalog = describe(OptionsScope::Topic);
        assert_eq!(catalog.len(), 9);
        let defaults: Options = catalog.iter().fold(Options::new(), |mut options, entry| {
            let value = OptionValue {
                kind: entry.kind,
                bytes: entry.default_value.clone(),
            };
            options.push(&entry.key, value).unwrap();
            options
        });
        let parsed = TopicOptions::parse(&defaults).unwrap();
        assert_eq!(parsed.segment_size_bytes, Some(1 << 30));
        assert_eq!(parsed.preallocate_segments, Some(false));
        assert!(describe(OptionsScope::Stream).is_empty());
        assert!(describe(OptionsScope::User).is_empty());
    }

    /// Any valid block.
    pub(crate) fn any_options() -> impl Strategy<Value = Options> {
        let value = (1u8..=255, proptest::collection::vec(any::<u8>(), 1..20))
            .prop_map(|(kind, bytes)| OptionValue { kind, bytes });
        proptest::collection::btree_map("[a-z_]{1,12}", value, 0..6).prop_map(|pairs| {
            let mut options = Options::new();
            for (key, value) in pairs {
                options.push(&key, value).expect("small pairs fit");
            }
            options
        })
    }

    proptest! {
        #[test]
        fn blocks_round_trip(options in any_options()) {
            let bytes = encoded_tail(&options);
            prop_assert_eq!(bytes.len(), options.encoded_len());
            prop_assert_eq!(Options::decode_tail(&bytes), Ok(options));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            if let Ok(options) = Options::decode_tail(&bytes) {
                prop_assert_eq!(encoded_tail(&options), bytes.clone());
                let _ = TopicOptions::parse(&options);
                let _ = TopicUpdateOptions::parse(&options);
            }
            let _ = Options::decode_prefixed(&mut Reader::new(&bytes));
        }

        #[test]
        fn text_parsers_never_panic(text in "\\PC{0,24}") {
            let _ = parse_byte_size(&text);
            let _ = parse_duration_us(&text);
        }
    }
}

//! A bounds-checked cursor over a payload.
//!
//! Every read either returns the value and advances, or returns an [`ErrorCode`] and leaves the
//! cursor where it was. Per PROTOCOL.md §1.1 a truncated buffer and invalid UTF-8 are both
//! 3 `InvalidCommand`; a zero-length `name8` is a validation failure, 4 `InvalidFormat`.
//! Nothing here panics or allocates.

use crate::error::ErrorCode;

/// Longest `name8`: its length is one byte.
pub const NAME_BYTES_MAX: usize = 255;

/// A cursor over `&'a [u8]` that reads little-endian fields.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ErrorCode> {
        if n > self.remaining() {
            return Err(ErrorCode::InvalidCommand);
        }
        let slice = &self.bytes[self.position..self.position + n];
        self.position += n;
        Ok(slice)
    }

    /// Every byte not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let slice = &self.bytes[self.position..];
        self.position = self.bytes.len();
        slice
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ErrorCode> {
        let slice = self.bytes(N)?;
        let mut array = [0; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, ErrorCode> {
        Ok(self.array::<1>()?[0])
    }

    /// A bool written as one byte; any non-zero value is true (PROTOCOL.md §0).
    pub fn bool(&mut self) -> Result<bool, ErrorCode> {
        Ok(self.u8()? != 0)
    }

    /// A presence flag: only the value 1 means present (PROTOCOL.md §0).
    pub fn flag(&mut self) -> Result<bool, ErrorCode> {
        Ok(self.u8()? == 1)
    }

    /// A u16, little-endian.
    pub fn u16(&mut self) -> Result<u16, ErrorCode> {
        self.array().map(u16::from_le_bytes)
    }

    /// A u32, little-endian.
    pub fn u32(&mut self) -> Result<u32, ErrorCode> {
        self.array().map(u32::from_le_bytes)
    }

    /// A u64, little-endian.
    pub fn u64(&mut self) -> Result<u64, ErrorCode> {
        self.array().map(u64::from_le_bytes)
    }

    /// A u128, little-endian.
    pub fn u128(&mut self) -> Result<u128, ErrorCode> {
        self.array().map(u128::from_le_bytes)
    }

    /// An f32, little-endian.
    pub fn f32(&mut self) -> Result<f32, ErrorCode> {
        self.array().map(f32::from_le_bytes)
    }

    fn utf8(&mut self, len: usize) -> Result<&'a str, ErrorCode> {
        let start = self.position;
        let bytes = self.bytes(len)?;
        std::str::from_utf8(bytes).map_err(|_| {
            self.position = start;
            ErrorCode::InvalidCommand
        })
    }

    /// A `name8`: u8 length 1..=255, then UTF-8. Length 0 is 4 `InvalidFormat`.
    pub fn name8(&mut self) -> Result<&'a str, ErrorCode> {
        let start = self.position;
        let len = self.u8()?;
        if len == 0 {
            self.position = start;
            return Err(ErrorCode::InvalidFormat);
        }
        self.utf8(usize::from(len))
            .inspect_err(|_| self.position = start)
    }

    /// A `str8`: u8 length (0 allowed), then UTF-8.
    pub fn str8(&mut self) -> Result<&'a str, ErrorCode> {
        let start = self.position;
        let len = self.u8()?;
        self.utf8(usize::from(len))
            .inspect_err(|_| self.position = start)
    }

    /// A `str32`: u32 length, then UTF-8.
    pub fn str32(&mut self) -> Result<&'a str, ErrorCode> {
        let start = self.position;
        let len = self.u32()?;
        // A length beyond usize cannot be satisfied by any buffer: it is a truncation.
        let len = usize::try_from(len).map_err(|_| ErrorCode::InvalidCommand);
        len.and_then(|len| self.utf8(len))
            .inspect_err(|_| self.position = start)
    }

    /// A u32 element count, with a capacity hint bounded by what the rest of the buffer can
    /// hold at `element_bytes_min` each, so a hostile count cannot make a decoder allocate.
    pub fn count(&mut self, element_bytes_min: usize) -> Result<(u32, usize), ErrorCode> {
        debug_assert!(element_bytes_min > 0);
        let count = self.u32()?;
        let hint = (count as usize).min(self.remaining() / element_bytes_min);
        Ok((count, hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u8(), Ok(1));
        assert_eq!(reader.u16(), Ok(2));
        assert_eq!(reader.u32(), Ok(3));
        assert_eq!(reader.u64(), Ok(4));
        assert!(reader.is_empty());
        assert_eq!(reader.u8(), Err(ErrorCode::InvalidCommand));
    }

    #[test]
    fn truncation_is_invalid_command_and_does_not_advance() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u32(), Err(ErrorCode::InvalidCommand));
        assert_eq!(reader.position(), 0);
        assert_eq!(reader.bytes(4), Err(ErrorCode::InvalidCommand));
        assert_eq!(reader.bytes(3), Ok(&[1, 2, 3][..]));
    }

    #[test]
    fn names_and_strings() {
        let mut reader = Reader::new(b"\x02hi\x00\x03\x00\x00\x00abc");
        assert_eq!(reader.name8(), Ok("hi"));
        assert_eq!(reader.str8(), Ok(""));
        assert_eq!(reader.str32(), Ok("abc"));
        assert_eq!(Reader::new(b"\x00").name8(), Err(ErrorCode::InvalidFormat));
        assert_eq!(
            Reader::new(b"\x02h").name8(),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            Reader::new(b"\x01\xff").str8(),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 1]).str32(),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn flags_and_bools() {
        let mut reader = Reader::new(&[1, 2, 0, 2]);
        assert_eq!(reader.flag(), Ok(true));
        assert_eq!(reader.flag(), Ok(false));
        assert_eq!(reader.bool(), Ok(false));
        assert_eq!(reader.bool(), Ok(true));
    }

    #[test]
    fn count_hint_is_bounded_by_the_buffer() {
        let mut reader = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reader.count(4), Ok((u32::MAX, 2)));
    }
}

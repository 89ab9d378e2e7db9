//! The optional partition id of polls and offset commands (PROTOCOL.md §4.5).
//!
//! ```text
//! [flag u8][partition_id u32]   always 5 bytes; only flag 1 means present
//! ```

use bytes::{BufMut, BytesMut};

use crate::error::ErrorCode;
use crate::reader::Reader;

/// Appends an optional partition id; an absent one is written as 0 and 0, as the SDK does.
pub fn encode_optional_partition(partition_id: Option<u32>, out: &mut BytesMut) {
    match partition_id {
        Some(id) => {
            out.put_u8(1);
            out.put_u32_le(id);
        }
        None => {
            out.put_u8(0);
            out.put_u32_le(0);
        }
    }
}

/// Reads an optional partition id: present only when the flag is exactly 1.
pub fn decode_optional_partition(reader: &mut Reader<'_>) -> Result<Option<u32>, ErrorCode> {
    let [flag, id @ ..] = reader.bytes(5)? else {
        unreachable!("bytes() returned 5 bytes");
    };
    let id = u32::from_le_bytes(id.try_into().expect("4 bytes"));
    Ok((*flag == 1).then_some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flag_one_is_present() {
        assert_eq!(
            decode_optional_partition(&mut Reader::new(&[1, 7, 0, 0, 0])),
            Ok(Some(7))
        );
        assert_eq!(
            decode_optional_partition(&mut Reader::new(&[2, 7, 0, 0, 0])),
            Ok(None)
        );
        assert_eq!(
            decode_optional_partition(&mut Reader::new(&[1, 7, 0, 0])),
            Err(ErrorCode::InvalidCommand)
        );
        let mut out = BytesMut::new();
        encode_optional_partition(None, &mut out);
        encode_optional_partition(Some(3), &mut out);
        assert_eq!(&out[..], [0, 0, 0, 0, 0, 1, 3, 0, 0, 0]);
    }
}

//! RFC 6455 masking, which a client applies to every frame it sends and a server removes.
//! galgo frames binary data itself (one copy instead of tungstenite's several), and tungstenite
//! keeps its own masking private, so the XOR both sides need lives here, with the client's
//! mask generator and the server's unmasking copy.

use std::hash::{BuildHasher, RandomState};

use bytes::BytesMut;

/// XORs `data` with `mask` repeated from its first byte (RFC 6455 §5.3), eight bytes at a
/// time. Masking twice with the same key restores the data.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for chunk in &mut words {
        let value = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// XORs `data`, the payload from its byte `offset` on, with `mask` (a payload masked or
/// unmasked in pieces).
pub fn apply_mask_at(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut phased = mask;
    phased.rotate_left(offset % 4);
    apply_mask(data, phased);
}

/// Appends `data` to `out` masked with `mask` (`None`: as it is), in one pass: its first byte
/// is the payload's byte `offset`. The client masks what it sends this way, and the server
/// unmasks what it receives (masking is its own inverse).
pub fn mask_into(out: &mut BytesMut, data: &[u8], mask: Option<[u8; 4]>, offset: usize) {
    let start = out.len();
    out.extend_from_slice(data);
    if let Some(mask) = mask {
        apply_mask_at(&mut out[start..], mask, offset);
    }
}

/// A client's frame masks: SipHash of a counter, keyed with the process's random keys (std
/// seeds them from the OS), so masks are unpredictable to a peer as RFC 6455 §5.3 asks,
/// without a random-number crate or a system call per frame.
#[derive(Debug)]
pub struct Masks {
    keys: RandomState,
    count: u64,
}

impl Masks {
    /// A generator under fresh keys.
    pub fn new() -> Self {
        Self {
            keys: RandomState::new(),
            count: 0,
        }
    }

    /// The mask of the next frame.
    pub fn next_mask(&mut self) -> [u8; 4] {
        self.count += 1;
        (self.keys.hash_one(self.count) as u32).to_ne_bytes()
    }
}

impl Default for Masks {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_matches_the_bytewise_definition_and_undoes_itself() {
        let mask = [0x6d, 0xb6, 0xb2, 0x80];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut masked = plain.clone();
            apply_mask(&mut masked, mask);
            let expected: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4])
                .collect();
            assert_eq!(masked, expected, "length {len}");
            apply_mask(&mut masked, mask);
            assert_eq!(masked, plain, "length {len}: masking twice restores");
        }
    }

    #[test]
    fn unmasking_in_pieces_matches_unmasking_at_once() {
        let mask = [0x6d, 0xb6, 0xb2, 0x80];
        let plain: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let masked: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4])
            .collect();
        for split in [0, 1, 2, 3, 5, 8, 13, 999, 1000] {
            let mut out = BytesMut::from(&b"kept"[..]);
            mask_into(&mut out, &masked[..split], Some(mask), 0);
            mask_into(&mut out, &masked[split..], Some(mask), split);
            assert_eq!(&out[..4], b"kept");
            assert_eq!(&out[4..], &plain[..], "split at {split}");
        }
    }

    #[test]
    fn masks_differ_from_frame_to_frame() {
        let mut masks = Masks::new();
        let first = masks.next_mask();
        assert!((0..16).any(|_| masks.next_mask() != first));
    }
}

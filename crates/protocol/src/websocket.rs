//! What carrying the protocol over WebSocket adds to its bytes: RFC 6455 masking, which the
//! client applies to every frame it sends and the server removes. galgo's client and server
//! frame binary data themselves (one copy instead of tungstenite's several), and tungstenite
//! keeps its own masking private, so the one function both sides need lives here.

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
}

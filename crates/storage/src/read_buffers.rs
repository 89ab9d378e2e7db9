//! Reused buffers for the message bytes a poll reads from disk.
//!
//! A poll of a thousand 1 KB messages reads about 1 MB into a buffer that lives until the
//! response has left the socket. The server keeps every allocation of 1 MiB or more in its
//! own mapping (see `pin_mmap_threshold` in the server), so a fresh buffer per poll meant a
//! new mapping, 256 page faults with zeroed pages, and an munmap when the response was gone:
//! measured at about an eighth of the server's CPU time in a consumer run. Each shard thread
//! keeps a few such buffers and reuses them; a buffer comes back when the last `Bytes` handle
//! to it is dropped, normally on the same thread once the response is written.
//!
//! The pool is bounded ([`POOLED_BYTES_MAX`] per thread) so a burst of large polls does not
//! pin memory for good; what does not fit is simply freed.

use std::cell::RefCell;

use bytes::Bytes;

/// Buffers smaller than this are cheap to allocate and not pooled.
pub(crate) const POOLED_CAPACITY_MIN: usize = 64 * 1024;
/// Most bytes of free buffers one thread keeps.
pub(crate) const POOLED_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Capacities are rounded up to a multiple of this, so polls of similar sizes share buffers.
const CAPACITY_STEP: usize = 256 * 1024;

thread_local! {
    static FREE: RefCell<FreeBuffers> = const { RefCell::new(FreeBuffers::new()) };
}

/// One thread's free buffers.
struct FreeBuffers {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl FreeBuffers {
    const fn new() -> Self {
        Self {
            buffers: Vec::new(),
            bytes: 0,
        }
    }

    /// The smallest free buffer that holds `len` bytes, if any.
    fn take(&mut self, len: usize) -> Option<Vec<u8>> {
        let (index, _) = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, buffer)| buffer.capacity() >= len)
            .min_by_key(|(_, buffer)| buffer.capacity())?;
        let buffer = self.buffers.swap_remove(index);
        self.bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps `buffer` for reuse if there is room; frees it otherwise.
    fn give_back(&mut self, mut buffer: Vec<u8>) {
        if self.bytes + buffer.capacity() > POOLED_BYTES_MAX {
            return;
        }
        buffer.clear();
        self.bytes += buffer.capacity();
        self.buffers.push(buffer);
    }
}

/// An empty buffer with room for at least `len` bytes: a reused one when `len` is large
/// enough to be worth it and a free buffer fits.
pub(crate) fn take(len: usize) -> Vec<u8> {
    if len < POOLED_CAPACITY_MIN {
        return Vec::with_capacity(len);
    }
    FREE.with_borrow_mut(|free| free.take(len))
        .unwrap_or_else(|| Vec::with_capacity(len.next_multiple_of(CAPACITY_STEP)))
}

/// `buffer`'s contents as `Bytes` that return the buffer to the dropping thread's pool.
pub(crate) fn into_bytes(buffer: Vec<u8>) -> Bytes {
    if buffer.capacity() < POOLED_CAPACITY_MIN {
        return Bytes::from(buffer);
    }
    Bytes::from_owner(Pooled(buffer))
}

/// Owner of a pooled buffer inside `Bytes`.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        // A thread being torn down has no pool any more; the buffer is then just freed.
        let _ = FREE.try_with(|free| {
            if let Ok(mut free) = free.try_borrow_mut() {
                free.give_back(buffer);
            }
        });
    }
}

/// Bytes of free buffers this thread keeps.
#[cfg(test)]
fn pooled_bytes() -> usize {
    FREE.with_borrow(|free| free.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_reused_by_the_next_take() {
        let mut buffer = take(1_000_000);
        buffer.extend_from_slice(&[7; 1_000_000]);
        let address = buffer.as_ptr();
        let bytes = into_bytes(buffer);
        assert_eq!(bytes.len(), 1_000_000);
        assert!(bytes.iter().all(|&byte| byte == 7));
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pooled_bytes(), 0, "a slice still holds the buffer");
        drop(slice);
        assert!(pooled_bytes() >= 1_000_000);
        let again = take(900_000);
        assert_eq!(again.as_ptr(), address, "the same allocation comes back");
        assert!(again.is_empty());
        assert_eq!(pooled_bytes(), 0);
    }

    #[test]
    fn small_buffers_are_not_pooled_and_the_pool_is_bounded() {
        drop(into_bytes(take(1000)));
        assert_eq!(pooled_bytes(), 0);
        let many: Vec<Bytes> = (0..40).map(|_| into_bytes(take(1 << 20))).collect();
        drop(many);
        assert!(pooled_bytes() <= POOLED_BYTES_MAX);
        assert!(pooled_bytes() >= POOLED_BYTES_MAX - (1 << 20));
    }

    #[test]
    fn the_smallest_fitting_buffer_is_taken() {
        let small = into_bytes(take(300_000));
        let large = into_bytes(take(3_000_000));
        drop((small, large));
        assert!(take(200_000).capacity() < 1_000_000);
        assert!(take(2_000_000).capacity() >= 3_000_000);
    }
}

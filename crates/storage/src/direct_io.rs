//! O_DIRECT writes of the active segment's `.log`.
//!
//! Buffered writes cost the shard's io_uring workers a copy into the page cache, ext4's
//! delayed-allocation bookkeeping and, at each fdatasync, the write-back of everything dirty
//! (measured: about half the server's CPU, and the stalls of the interval sync). With O_DIRECT
//! the write goes from our buffer to the device, and an fdatasync only flushes the device cache
//! and the file size.
//!
//! O_DIRECT wants the buffer's address, its length and the file offset to be multiples of the
//! block size (`DIRECT_IO_BLOCK_BYTES`). Messages end anywhere, so the segment keeps the bytes
//! of its partial last block in memory (its *tail*, < one block), and each write copies tail +
//! new messages into one aligned buffer, zero-pads it to a whole block and writes it at the
//! tail's block. The file may thus be up to a block longer than the segment's logical size
//! while the segment is active; sealing and closing cut it back (`File::set_len`), and
//! recovery cuts the zero padding a crash leaves (see `recovery`).
//!
//! Rewriting the tail block rewrites bytes already written (and perhaps acknowledged) with the
//! same values, so a torn write of that block (some sectors new, some old) still holds them.
//!
//! ```text
//! file:   |  block  |  block  |  block  |tail..|000 padding|
//!                                       ^ floor(size / 4096) * 4096     ^ size (logical)
//! write:                                |tail..|new messages ........|0000|
//! ```

use std::{
    cell::RefCell,
    io,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use compio::{
    BufResult,
    buf::IoBuf,
    fs::{File, OpenOptions},
    io::AsyncWriteAtExt,
};

use crate::{DirectIo, StorageError, disk};

/// Alignment of O_DIRECT buffers, lengths and file offsets. ext4 and xfs accept 4096 on every
/// common device (their block size, and a multiple of any logical sector size).
pub(crate) const DIRECT_IO_BLOCK_BYTES: usize = 4096;
/// Most bytes one O_DIRECT write carries: a longer run is written in several writes. Bounds
/// the size of the write buffers.
pub(crate) const DIRECT_WRITE_BYTES_MAX: usize = 4 << 20;
/// Write buffers each shard keeps for reuse; more are allocated while more writes are in
/// flight at once, and dropped when they come back to a full pool.
const FREE_BUFFERS_MAX: usize = 2;
const _: () = assert!(DIRECT_WRITE_BYTES_MAX.is_multiple_of(DIRECT_IO_BLOCK_BYTES));
const _: () = assert!(DIRECT_IO_BLOCK_BYTES.is_power_of_two());

/// Set once "auto" fell back to buffered writes, so the warning is logged once per process.
static FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The shard's free write buffers (a shard is a thread).
    static FREE_BUFFERS: RefCell<Vec<AlignedBuffer>> = const { RefCell::new(Vec::new()) };
}

/// The `.log` of the active segment: the handle writes go to and the one reads use.
pub(crate) struct LogFiles {
    /// Opened with O_DIRECT when `direct` is set.
    pub writer: File,
    /// Buffered: reads need no alignment. The same handle as `writer` when not `direct`.
    pub reader: File,
    /// True when `writer` was opened with O_DIRECT.
    pub direct: bool,
}

/// Opens (creating it when `create` is set) an active segment's log for writes with O_DIRECT
/// as `mode` asks, and for buffered reads.
pub(crate) async fn open_log(
    path: &Path,
    create: bool,
    mode: DirectIo,
) -> Result<LogFiles, StorageError> {
    let reader = disk::open_read_write(path, create).await?;
    if mode == DirectIo::Off {
        let writer = reader.clone();
        return Ok(LogFiles {
            writer,
            reader,
            direct: false,
        });
    }
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .await;
    match opened {
        Ok(writer) => Ok(LogFiles {
            writer,
            reader,
            direct: true,
        }),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) && mode == DirectIo::Auto => {
            if !FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %path.display(),
                    "the file system refuses O_DIRECT; segment logs are written through the \
                     page cache (storage.direct_io = \"auto\")");
            }
            let writer = reader.clone();
            Ok(LogFiles {
                writer,
                reader,
                direct: false,
            })
        }
        Err(error) => Err(StorageError::Io(io::Error::new(
            error.kind(),
            format!(
                "cannot open {} with O_DIRECT (storage.direct_io = \"{mode}\"): {error}",
                path.display()
            ),
        ))),
    }
}

/// Reads the partial last block of a log of `size_bytes` bytes (empty when the size is a
/// multiple of the block size): what the next O_DIRECT write starts with.
pub(crate) async fn read_tail(reader: &File, size_bytes: u64) -> io::Result<Vec<u8>> {
    let tail_bytes = (size_bytes % DIRECT_IO_BLOCK_BYTES as u64) as usize;
    disk::read_exact_at(reader, tail_bytes, size_bytes - tail_bytes as u64).await
}

/// Writes `chunks` at logical position `position` of a log opened with O_DIRECT whose partial
/// last block is `tail` (`position % DIRECT_IO_BLOCK_BYTES` bytes). Returns the new tail.
///
/// On an error, nothing is promised about the bytes from the tail's block on: the caller keeps
/// its old size and tail, and the next write rewrites them.
pub(crate) async fn write_direct(
    writer: &File,
    tail: &[u8],
    chunks: &[Bytes],
    position: u64,
) -> io::Result<Vec<u8>> {
    assert_eq!(
        tail.len() as u64,
        position % DIRECT_IO_BLOCK_BYTES as u64,
        "the tail is the partial last block"
    );
    let mut buffer = take_buffer();
    buffer.extend(tail);
    let mut file_position = position - tail.len() as u64;
    // Next byte to copy: chunk `at`, from byte `within` of it.
    let (mut at, mut within) = (0, 0);
    loop {
        while at < chunks.len() && buffer.room() > 0 {
            let rest = &chunks[at][within..];
            let taken = buffer.room().min(rest.len());
            buffer.extend(&rest[..taken]);
            within += taken;
            if within == chunks[at].len() {
                (at, within) = (at + 1, 0);
            }
        }
        let done = at == chunks.len();
        let filled = buffer.len();
        let new_tail =
            done.then(|| buffer.bytes()[filled - filled % DIRECT_IO_BLOCK_BYTES..].to_vec());
        buffer.pad_to_block();
        let mut handle = writer;
        let BufResult(result, returned) = handle.write_all_at(buffer, file_position).await;
        buffer = returned;
        if let Err(error) = result {
            give_buffer(buffer);
            return Err(error);
        }
        if let Some(new_tail) = new_tail {
            give_buffer(buffer);
            return Ok(new_tail);
        }
        debug_assert_eq!(
            filled, DIRECT_WRITE_BYTES_MAX,
            "only a full buffer leaves bytes"
        );
        file_position += filled as u64;
        buffer.clear();
    }
}

fn take_buffer() -> AlignedBuffer {
    let mut buffer = FREE_BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(AlignedBuffer::new);
    buffer.clear();
    buffer
}

fn give_buffer(buffer: AlignedBuffer) {
    FREE_BUFFERS.with_borrow_mut(|free| {
        if free.len() < FREE_BUFFERS_MAX {
            free.push(buffer);
        }
    });
}

/// Up to `DIRECT_WRITE_BYTES_MAX` bytes starting at a `DIRECT_IO_BLOCK_BYTES`-aligned address.
/// A `Vec` with a block's worth of spare room, of which the aligned part is used: its
/// allocation never moves, because it never grows past its capacity.
struct AlignedBuffer {
    bytes: Vec<u8>,
    /// Where the aligned part starts in `bytes`.
    start: usize,
}

impl AlignedBuffer {
    fn new() -> Self {
        let mut bytes: Vec<u8> =
            Vec::with_capacity(DIRECT_WRITE_BYTES_MAX + DIRECT_IO_BLOCK_BYTES - 1);
        let start = bytes.as_ptr().align_offset(DIRECT_IO_BLOCK_BYTES);
        assert!(
            start < DIRECT_IO_BLOCK_BYTES,
            "a byte buffer can be aligned"
        );
        bytes.resize(start, 0);
        Self { bytes, start }
    }

    fn clear(&mut self) {
        self.bytes.truncate(self.start);
    }

    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn room(&self) -> usize {
        DIRECT_WRITE_BYTES_MAX - self.len()
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn extend(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.room(), "the buffer never reallocates");
        self.bytes.extend_from_slice(bytes);
    }

    /// Zero-pads to a whole number of blocks.
    fn pad_to_block(&mut self) {
        let padded = self.len().next_multiple_of(DIRECT_IO_BLOCK_BYTES);
        self.bytes.resize(self.start + padded, 0);
        debug_assert_eq!(self.bytes().as_ptr() as usize % DIRECT_IO_BLOCK_BYTES, 0);
    }
}

impl IoBuf for AlignedBuffer {
    fn as_init(&self) -> &[u8] {
        self.bytes()
    }
}

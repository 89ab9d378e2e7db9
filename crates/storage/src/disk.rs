//! Thin helpers over `compio::fs` (io_uring): positional reads and writes that own their buffers,
//! fdatasync, and the few directory operations compio does not offer (run on a blocking thread,
//! only at open, purge and removal, never on the append or poll path).

use std::{
    io,
    path::{Path, PathBuf},
};

use bytes::Bytes;

use crate::read_buffers;
use compio::{
    BufResult,
    buf::{IntoInner, IoBuf},
    fs::{File, OpenOptions},
    io::{AsyncReadAtExt, AsyncWriteAtExt},
};

/// Most buffers one vectored write may carry: well under Linux's IOV_MAX (1024).
pub(crate) const WRITE_BUFFERS_MAX: usize = 512;

/// Opens a file for positional reads and writes, creating it when `create` is set.
pub(crate) async fn open_read_write(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .open(path)
        .await
}

/// Opens a file for positional reads.
pub(crate) async fn open_read(path: &Path) -> io::Result<File> {
    File::open(path).await
}

/// The current length of an open file.
pub(crate) async fn file_len(file: &File) -> io::Result<u64> {
    Ok(file.metadata().await?.len())
}

/// Reads exactly `len` bytes at `position` into a fresh buffer.
pub(crate) async fn read_exact_at(file: &File, len: usize, position: u64) -> io::Result<Vec<u8>> {
    read_exact_into(file, Vec::with_capacity(len), len, position).await
}

/// Reads exactly `len` bytes at `position`, as `Bytes` ready to hand to a client, into a
/// reused buffer that goes back to its pool once the last handle is dropped (read_buffers.rs).
pub(crate) async fn read_bytes_at(file: &File, len: usize, position: u64) -> io::Result<Bytes> {
    let buffer = read_exact_into(file, read_buffers::take(len), len, position).await?;
    Ok(read_buffers::into_bytes(buffer))
}

/// Reads exactly `len` bytes at `position` into the empty `buffer`, which holds at least that.
async fn read_exact_into(
    file: &File,
    buffer: Vec<u8>,
    len: usize,
    position: u64,
) -> io::Result<Vec<u8>> {
    debug_assert!(buffer.is_empty() && buffer.capacity() >= len);
    if len == 0 {
        return Ok(buffer);
    }
    let BufResult(result, buffer) = file.read_exact_at(buffer.slice(..len), position).await;
    result?;
    let buffer = buffer.into_inner();
    debug_assert_eq!(buffer.len(), len);
    Ok(buffer)
}

/// Writes all of `buffer` at `position`.
pub(crate) async fn write_all_at(file: &File, buffer: Vec<u8>, position: u64) -> io::Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    let mut writer = file;
    let BufResult(result, _) = writer.write_all_at(buffer, position).await;
    result
}

/// Writes `buffers` back to back at `position` with vectored writes (one system call for up
/// to `WRITE_BUFFERS_MAX` buffers, more only after a short write).
pub(crate) async fn write_vectored_all_at(
    file: &File,
    buffers: Vec<Bytes>,
    position: u64,
) -> io::Result<()> {
    debug_assert!(buffers.len() <= WRITE_BUFFERS_MAX);
    if buffers.iter().all(Bytes::is_empty) {
        return Ok(());
    }
    let mut writer = file;
    let BufResult(result, _) = writer.write_vectored_all_at(buffers, position).await;
    result
}

/// fsyncs a directory, so that files created or renamed in it survive a crash.
pub(crate) async fn sync_dir(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir).await?;
    handle.sync_all().await
}

/// What [`replace_file`] appends to a file's name for its temporary sibling; one left behind
/// by a crash is never the file itself.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Replaces the small file at `path` with `bytes` so that a crash leaves the old or the new
/// contents, never a mix: written to a sibling temporary file, renamed over `path`. When
/// `durable`, the file is fdatasynced before the rename and the directory fsynced after it,
/// so the new contents also survive a crash of the machine once this returns.
pub async fn replace_file(path: &Path, bytes: Vec<u8>, durable: bool) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let file = File::create(&tmp).await?;
    write_all_at(&file, bytes, 0).await?;
    if durable {
        file.sync_data().await?;
    }
    drop(file);
    compio::fs::rename(&tmp, path).await?;
    if durable {
        sync_dir(path.parent().unwrap_or(Path::new("."))).await?;
    }
    Ok(())
}

/// Names of the entries of `dir`; empty when it does not exist.
pub(crate) async fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let dir = dir.to_path_buf();
    blocking(move || match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
            .collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    })
    .await
}

/// Removes a directory tree; a missing directory is not an error.
pub(crate) async fn remove_dir_all(dir: &Path) -> io::Result<()> {
    let dir: PathBuf = dir.to_path_buf();
    blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await
}

/// Creates a directory and its parents.
pub(crate) async fn create_dir_all(dir: &Path) -> io::Result<()> {
    compio::fs::create_dir_all(dir).await
}

/// Removes a file; returns false when it did not exist.
pub(crate) async fn remove_file_if_exists(path: &Path) -> io::Result<bool> {
    match compio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    compio::runtime::spawn_blocking(work)
        .await
        .map_err(|error| io::Error::other(format!("blocking file-system task failed: {error:?}")))?
}

//! The adapters' buffer limits, one constant each. Buffers grow to what a message needs and
//! are reused; these bound how much one socket operation asks for.

/// Free room a read into a full buffer reserves (and an adapter's own receive buffer asks for),
/// so every socket read can fetch a useful amount.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Encrypted bytes rustls may queue before a TLS stream hands them to the socket (rustls's
/// buffer limit): large requests and responses leave in writes of this size rather than one
/// per 16 KiB record.
pub const SEND_BUFFER_BYTES: usize = 1024 * 1024;

/// Largest room one socket read reserves while a WebSocket binary frame's payload is arriving
/// at a server: a 1 MB request arrives in a few reads, and an idle connection does not keep
/// more.
pub const WS_RECEIVE_BYTES_MAX: usize = 1024 * 1024;

/// Most iovecs one vectored socket write takes: Linux's IOV_MAX (UIO_MAXIOV). A frame of
/// more chunks (a 0.9 poll reply of many messages) leaves in several writes.
pub const IOVECS_MAX: usize = 1024;

const _: () = assert!(WS_RECEIVE_BYTES_MAX >= READ_CHUNK_BYTES);

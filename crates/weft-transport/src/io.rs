use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream, tcp, unix};

use crate::Address;

/// Buffer size of each direction of a [`memory_pair`].
const MEMORY_BUFFER: usize = 256 * 1024;

/// A connected byte stream: TCP, a unix-domain socket, or an in-memory pipe for tests.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (`TCP_NODELAY` set).
    Tcp(TcpStream),
    /// A unix-domain socket connection.
    Unix(UnixStream),
    /// One end of an in-memory pipe made by [`memory_pair`].
    Memory(DuplexStream),
}

impl Stream {
    /// Splits the stream so the reader task and the writers can use it at once.
    pub(crate) fn into_split(self) -> (ReadIo, WriteIo) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadIo::Tcp(r), WriteIo::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadIo::Unix(r), WriteIo::Unix(w))
            }
            Stream::Memory(s) => {
                let (r, w) = tokio::io::split(s);
                (ReadIo::Memory(r), WriteIo::Memory(w))
            }
        }
    }

    /// The address of the peer, as far as the socket knows it.
    pub(crate) fn peer_address(&self) -> Address {
        match self {
            Stream::Tcp(s) => s.peer_addr().map_or_else(
                |_| Address::Tcp("unknown:0".into()),
                |a| Address::Tcp(a.to_string()),
            ),
            Stream::Unix(s) => Address::Unix(
                s.peer_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("unix-peer")),
            ),
            Stream::Memory(_) => Address::Unix(PathBuf::from("memory")),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
            Stream::Memory($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Memory(s) => s.is_write_vectored(),
        }
    }
}

/// Opens a stream to `addr`, with `TCP_NODELAY` on for TCP (frames are small and
/// latency-bound; writes are already coalesced by the connection).
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// let addr = "127.0.0.1:7400".parse().unwrap();
/// let stream = weft_transport::connect(&addr).await?;
/// # drop(stream); Ok(()) }
/// ```
pub async fn connect(addr: &Address) -> io::Result<Stream> {
    match addr {
        Address::Tcp(hostport) => {
            let s = TcpStream::connect(hostport.as_str()).await?;
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
        Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
    }
}

/// Two connected in-memory streams, for tests without sockets.
///
/// ```
/// let (client, server) = weft_transport::memory_pair();
/// # drop((client, server));
/// ```
pub fn memory_pair() -> (Stream, Stream) {
    let (a, b) = tokio::io::duplex(MEMORY_BUFFER);
    (Stream::Memory(a), Stream::Memory(b))
}

/// A bound listening socket, TCP or unix-domain.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix-domain socket listener and the path it is bound to.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. For a unix socket, a stale socket file left by a previous process is
    /// removed first (a regular file at that path is not touched: binding fails instead).
    ///
    /// ```no_run
    /// # async fn f() -> std::io::Result<()> {
    /// let listener = weft_transport::Listener::bind(&"127.0.0.1:0".parse().unwrap()).await?;
    /// println!("listening on {}", listener.local_address());
    /// # Ok(()) }
    /// ```
    pub async fn bind(addr: &Address) -> io::Result<Listener> {
        match addr {
            Address::Tcp(hostport) => {
                Ok(Listener::Tcp(TcpListener::bind(hostport.as_str()).await?))
            }
            Address::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(meta) = std::fs::symlink_metadata(path)
                    && meta.file_type().is_socket()
                {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    /// The address the listener is bound to, with the real port after binding port 0.
    pub fn local_address(&self) -> Address {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Address::Tcp(a.to_string()),
                Err(_) => Address::Tcp("unknown:0".into()),
            },
            Listener::Unix(_, path) => Address::Unix(path.clone()),
        }
    }

    /// Waits for the next connection; returns it with a description of the peer.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix:{}", path.display())))
            }
        }
    }
}

/// The read side of a split [`Stream`].
#[derive(Debug)]
pub(crate) enum ReadIo {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
    Memory(tokio::io::ReadHalf<DuplexStream>),
}

impl AsyncRead for ReadIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReadIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ReadIo::Memory(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

/// The write side of a split [`Stream`].
#[derive(Debug)]
pub(crate) enum WriteIo {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
    Memory(tokio::io::WriteHalf<DuplexStream>),
}

impl WriteIo {
    /// Writes without waiting: `WouldBlock` when the socket is full.
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteIo::Tcp(s) => s.try_write(buf),
            WriteIo::Unix(s) => s.try_write(buf),
            // The pipe has no `try_write`: poll once without a waker. The task that takes
            // over after `WouldBlock` polls again with its own waker, so nothing is lost.
            WriteIo::Memory(s) => {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(s).poll_write(&mut cx, buf) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// [`try_write`](Self::try_write) of several buffers in one syscall.
    pub(crate) fn try_write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            WriteIo::Tcp(s) => s.try_write_vectored(bufs),
            WriteIo::Unix(s) => s.try_write_vectored(bufs),
            WriteIo::Memory(s) => {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(s).poll_write_vectored(&mut cx, bufs) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            WriteIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WriteIo::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WriteIo::Memory(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            WriteIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WriteIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
            WriteIo::Memory(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

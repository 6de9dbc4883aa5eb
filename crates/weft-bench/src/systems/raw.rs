//! The floors: a 4-byte big-endian length, then the payload, echoed back on
//! plain tokio TCP (with `TCP_NODELAY`) or a Unix socket, one connection per
//! caller. No framing library, no allocation per call: the least any RPC
//! over tokio can cost on each transport.

use std::path::PathBuf;

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::measure::Flavour;
use crate::process::{ServerProcess, announce};

/// The largest frame the echo server accepts.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The echo server process.
#[derive(Debug)]
pub(crate) struct Server {
    // Fields drop in order: the process is killed before its socket's
    // directory is removed.
    process: ServerProcess,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the echo server on TCP, or on a Unix socket in a new
    /// temporary directory.
    pub(crate) async fn start(flavour: Flavour, unix: bool) -> anyhow::Result<Server> {
        let server = if unix {
            let dir = tempfile::Builder::new()
                .prefix("weft-bench-unix-")
                .tempdir()
                .context("cannot create a directory for the socket")?;
            let path = dir.path().join("echo.sock");
            let path = path.to_str().context("the temp dir's path is not UTF-8")?;
            let process = ServerProcess::start("raw-unix", flavour, &["--path", path]).await?;
            Server {
                process,
                _dir: Some(dir),
            }
        } else {
            let process =
                ServerProcess::start("raw-tcp", flavour, &["--listen", "127.0.0.1:0"]).await?;
            Server {
                process,
                _dir: None,
            }
        };
        // Readiness is one full echo, not just a printed address.
        let ready = if unix {
            server
                .unix_callers(1, b"ready")
                .await?
                .pop()
                .context("no caller")?
                .call()
                .await
        } else {
            server
                .tcp_callers(1, b"ready")
                .await?
                .pop()
                .context("no caller")?
                .call()
                .await
        };
        ready.with_context(|| format!("the {} server does not answer", server.process.role()))?;
        Ok(server)
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    /// `n` callers, each with a TCP connection of its own.
    pub(crate) async fn tcp_callers(
        &self,
        n: usize,
        payload: &[u8],
    ) -> anyhow::Result<Vec<Caller<TcpStream>>> {
        tcp_callers(self.process.address(), n, payload).await
    }

    /// `n` callers, each with a Unix socket connection of its own.
    pub(crate) async fn unix_callers(
        &self,
        n: usize,
        payload: &[u8],
    ) -> anyhow::Result<Vec<Caller<UnixStream>>> {
        let path = self.process.address();
        let mut callers = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = UnixStream::connect(path)
                .await
                .with_context(|| format!("cannot connect to the Unix socket server at {path}"))?;
            callers.push(Caller::new(stream, payload)?);
        }
        Ok(callers)
    }
}

/// `n` callers of the raw TCP echo server at `address`, each with a
/// connection of its own.
pub(crate) async fn tcp_callers(
    address: &str,
    n: usize,
    payload: &[u8],
) -> anyhow::Result<Vec<Caller<TcpStream>>> {
    let mut callers = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to the raw TCP server at {address}"))?;
        stream.set_nodelay(true)?;
        callers.push(Caller::new(stream, payload)?);
    }
    Ok(callers)
}

/// One connection doing ping-pong.
#[derive(Debug)]
pub(crate) struct Caller<S> {
    stream: S,
    /// The whole request frame, built once: one `write` per call.
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Caller<S> {
    fn new(stream: S, payload: &[u8]) -> anyhow::Result<Caller<S>> {
        let mut request = Vec::with_capacity(4 + payload.len());
        request.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
        request.extend_from_slice(payload);
        let reply = vec![0; request.len()];
        Ok(Caller {
            stream,
            request,
            reply,
        })
    }

    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.request).await?;
        self.stream.read_exact(&mut self.reply[..4]).await?;
        let len = u32::from_be_bytes(self.reply[..4].try_into()?) as usize;
        ensure!(
            len + 4 == self.reply.len(),
            "the echo server echoed {len} bytes for {}",
            self.reply.len() - 4
        );
        self.stream.read_exact(&mut self.reply[4..]).await?;
        ensure!(
            self.reply == self.request,
            "the echo server echoed other bytes"
        );
        Ok(())
    }
}

/// `__serve raw-tcp`: echoes frames on every connection until stopped.
pub(crate) async fn serve_tcp(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    announce(&listener.local_addr()?.to_string())?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(echo_connection(stream));
    }
}

/// `__serve raw-unix`: the same on a Unix socket at `path`.
pub(crate) async fn serve_unix(path: PathBuf) -> anyhow::Result<()> {
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    announce(&path.display().to_string())?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(echo_connection(stream));
    }
}

async fn echo_connection(stream: impl AsyncRead + AsyncWrite + Unpin) {
    if let Err(e) = echo(stream).await {
        eprintln!("raw echo: connection ended: {e:#}");
    }
}

async fn echo(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> anyhow::Result<()> {
    let mut frame = vec![0u8; 4 + 64];
    loop {
        match stream.read_exact(&mut frame[..4]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(frame[..4].try_into()?) as usize;
        if len > MAX_FRAME {
            bail!("a frame of {len} bytes is over the limit of {MAX_FRAME}");
        }
        frame.resize(4 + len, 0);
        stream.read_exact(&mut frame[4..]).await?;
        stream.write_all(&frame).await?;
    }
}

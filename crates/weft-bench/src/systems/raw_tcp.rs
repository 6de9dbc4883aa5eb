//! The floor: a 4-byte big-endian length, then the payload, echoed back on
//! plain tokio TCP with `TCP_NODELAY`, one connection per caller. No
//! framing library, no allocation per call: the least any RPC over tokio TCP
//! can cost.

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::process::{ServerProcess, announce};

/// The largest frame the echo server accepts.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The echo server process.
#[derive(Debug)]
pub(crate) struct Server {
    process: ServerProcess,
}

impl Server {
    pub(crate) async fn start() -> anyhow::Result<Server> {
        let process = ServerProcess::start("raw-tcp", &["--listen", "127.0.0.1:0"]).await?;
        let server = Server { process };
        // Readiness is one full echo, not just a printed address.
        server
            .callers(1, b"ready")
            .await?
            .pop()
            .context("no caller")?
            .call()
            .await
            .context("the raw TCP echo server does not answer")?;
        Ok(server)
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    /// `n` callers, each with a connection of its own.
    pub(crate) async fn callers(&self, n: usize, payload: &[u8]) -> anyhow::Result<Vec<Caller>> {
        let mut callers = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = TcpStream::connect(self.process.address())
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to the raw TCP server at {}",
                        self.process.address()
                    )
                })?;
            stream.set_nodelay(true)?;
            let mut request = Vec::with_capacity(4 + payload.len());
            request.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
            request.extend_from_slice(payload);
            let reply = vec![0; request.len()];
            callers.push(Caller {
                stream,
                request,
                reply,
            });
        }
        Ok(callers)
    }
}

/// One connection doing ping-pong.
#[derive(Debug)]
pub(crate) struct Caller {
    stream: TcpStream,
    /// The whole request frame, built once: one `write` per call.
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.request).await?;
        self.stream.read_exact(&mut self.reply[..4]).await?;
        let len = u32::from_be_bytes(self.reply[..4].try_into()?) as usize;
        ensure!(
            len + 4 == self.reply.len(),
            "the raw TCP server echoed {len} bytes for {}",
            self.reply.len() - 4
        );
        self.stream.read_exact(&mut self.reply[4..]).await?;
        ensure!(
            self.reply == self.request,
            "the raw TCP server echoed other bytes"
        );
        Ok(())
    }
}

/// `__serve raw-tcp`: echoes frames on every connection until killed.
pub(crate) async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    announce(&listener.local_addr()?.to_string())?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                eprintln!("raw-tcp: connection ended: {e:#}");
            }
        });
    }
}

async fn echo(mut stream: TcpStream) -> anyhow::Result<()> {
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

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use weft_core::Error;

use crate::{Address, ConnectOptions, Connection};

type Dial = Shared<BoxFuture<'static, Result<Connection, Error>>>;

/// One connection per peer, dialled on demand and dialled again once it closes (the peer
/// restarted or went away); concurrent [`get`](Pool::get)s for one peer share one dial.
///
/// ```no_run
/// # async fn f() -> Result<(), weft_core::Error> {
/// use weft_transport::{ConnectOptions, Pool};
///
/// let pool = Pool::new(ConnectOptions::default());
/// let conn = pool.get(&"127.0.0.1:7400".parse()?).await?;
/// # drop(conn); Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    opts: ConnectOptions,
    peers: Mutex<HashMap<Address, Entry>>,
}

enum Entry {
    Ready(Connection),
    /// A dial in progress; the number tells it from a later dial for the same peer.
    Dialing(u64, Dial),
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peers = self.inner.peers.lock();
        f.debug_struct("Pool")
            .field("opts", &self.inner.opts)
            .field("peers", &peers.keys().collect::<Vec<_>>())
            .finish()
    }
}

static DIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Pool {
    /// A pool dialling with `opts`.
    pub fn new(opts: ConnectOptions) -> Self {
        Pool {
            inner: Arc::new(PoolInner {
                opts,
                peers: Mutex::default(),
            }),
        }
    }

    /// The open connection to `addr`, dialling one if there is none or it closed.
    pub async fn get(&self, addr: &Address) -> Result<Connection, Error> {
        let (n, dial) = {
            let mut peers = self.inner.peers.lock();
            match peers.get(addr) {
                Some(Entry::Ready(conn)) if !conn.is_closed() => return Ok(conn.clone()),
                Some(Entry::Dialing(n, dial)) => (*n, dial.clone()),
                _ => {
                    let n = DIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (addr2, opts) = (addr.clone(), self.inner.opts.clone());
                    let dial = async move { Connection::connect(&addr2, &opts).await }
                        .boxed()
                        .shared();
                    peers.insert(addr.clone(), Entry::Dialing(n, dial.clone()));
                    (n, dial)
                }
            }
        };
        let result = dial.await;
        let mut peers = self.inner.peers.lock();
        if matches!(peers.get(addr), Some(Entry::Dialing(m, _)) if *m == n) {
            match &result {
                Ok(conn) => {
                    peers.insert(addr.clone(), Entry::Ready(conn.clone()));
                    self.forget_when_closed(addr, conn.clone());
                }
                Err(_) => {
                    peers.remove(addr);
                }
            }
        }
        result
    }

    /// Drops `conn` from the pool once it closes, so that the socket of a
    /// peer that went away for good is closed too, not kept half-open
    /// (CLOSE-WAIT) until someone asks for that peer again.
    fn forget_when_closed(&self, addr: &Address, conn: Connection) {
        let pool = Arc::downgrade(&self.inner);
        let addr = addr.clone();
        tokio::spawn(async move {
            conn.closed().await;
            let Some(pool) = pool.upgrade() else { return };
            let mut peers = pool.peers.lock();
            if matches!(peers.get(&addr), Some(Entry::Ready(c)) if c.same(&conn)) {
                peers.remove(&addr);
            }
        });
    }

    /// Calls in flight to `addr` (0 when not connected), for load balancing.
    pub fn outstanding(&self, addr: &Address) -> usize {
        match self.inner.peers.lock().get(addr) {
            Some(Entry::Ready(conn)) => conn.outstanding(),
            _ => 0,
        }
    }

    /// Drops the pool's connection to `addr`; the next `get` dials again. Calls in flight
    /// on it go on until they finish.
    pub fn forget(&self, addr: &Address) {
        self.inner.peers.lock().remove(addr);
    }
}

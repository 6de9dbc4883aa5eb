//! Registrations: the registry behind its lock, and which wire connection
//! registered which instance, so that a connection that closes (a crashed
//! instance) takes its instances with it at once instead of after the
//! lease lapses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use weft_core::Error;
use weft_registry::{Cache, InstanceInfo, RegisterReply, Registry, ServiceSummary};

/// The host's registry and the connections its instances registered over.
/// Locks are held only for in-memory work, never across an await.
#[derive(Debug)]
pub(crate) struct Registrations {
    registry: Mutex<Registry>,
    /// The registry's routing index, readable without its lock.
    index: Arc<Cache>,
    /// This host's name, stamped on the instances that register with it.
    name: String,
    conns: Mutex<Conns>,
}

/// Which connection registered which instance, so that a connection that
/// closes (a crashed instance) takes its instances with it at once instead
/// of after the lease lapses.
#[derive(Debug, Default)]
struct Conns {
    by_conn: HashMap<u64, HashSet<String>>,
    by_instance: HashMap<String, u64>,
}

impl Conns {
    fn bind(&mut self, conn: u64, id: &str) {
        // An instance that re-registers over a new connection moves there:
        // closing its old connection must not evict it.
        if let Some(old) = self.by_instance.insert(id.to_owned(), conn)
            && old != conn
            && let Some(ids) = self.by_conn.get_mut(&old)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_conn.remove(&old);
            }
        }
        self.by_conn.entry(conn).or_default().insert(id.to_owned());
    }

    fn unbind(&mut self, id: &str) {
        if let Some(conn) = self.by_instance.remove(id)
            && let Some(ids) = self.by_conn.get_mut(&conn)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }

    fn take_conn(&mut self, conn: u64) -> HashSet<String> {
        let ids = self.by_conn.remove(&conn).unwrap_or_default();
        for id in &ids {
            self.by_instance.remove(id);
        }
        ids
    }
}

impl Registrations {
    pub(crate) fn new(registry: Registry, name: String) -> Self {
        Registrations {
            name,
            index: registry.index(),
            registry: Mutex::new(registry),
            conns: Mutex::new(Conns::default()),
        }
    }

    /// The registry, locked: for reads and changes that the methods here
    /// do not cover (main versions, snapshots, specs).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock()
    }

    /// The registry's routing index.
    pub(crate) fn index(&self) -> Arc<Cache> {
        self.index.clone()
    }

    /// Registers an instance on behalf of connection `conn`.
    /// Registers an instance: one that connected to this host (`conn`)
    /// becomes this host's; one without a connection comes from another
    /// host of the cluster and keeps its host's name.
    pub(crate) fn register(
        &self,
        conn: Option<u64>,
        mut info: InstanceInfo,
    ) -> Result<RegisterReply, Error> {
        if conn.is_some() {
            info.host = Some(self.name.clone());
        }
        let id = info.id.clone();
        let reply = self.registry.lock().register(info, Instant::now())?;
        if let Some(conn) = conn {
            self.conns.lock().bind(conn, &id);
        }
        Ok(reply)
    }

    pub(crate) fn keepalive(&self, id: &str) -> Result<(), Error> {
        self.registry.lock().keepalive(id, Instant::now())
    }

    pub(crate) fn deregister(&self, id: &str) {
        self.registry.lock().deregister(id, Instant::now());
        self.conns.lock().unbind(id);
    }

    /// Evicts the instances that connection `conn` registered.
    pub(crate) fn disconnected(&self, conn: u64) {
        let ids = self.conns.lock().take_conn(conn);
        if ids.is_empty() {
            return;
        }
        let mut registry = self.registry.lock();
        for id in ids {
            if registry.deregister(&id, Instant::now()).is_some() {
                tracing::info!(instance = %id, "instance's connection closed; evicted it");
            }
        }
    }

    /// Evicts instances whose lease lapsed.
    pub(crate) fn expire(&self) {
        let lapsed = self.registry.lock().expire(Instant::now());
        if lapsed.is_empty() {
            return;
        }
        let mut conns = self.conns.lock();
        for id in lapsed {
            tracing::info!(instance = %id, "instance's lease lapsed; evicted it");
            conns.unbind(&id);
        }
    }

    pub(crate) fn services(&self) -> Vec<ServiceSummary> {
        self.registry.lock().services()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reregistering_elsewhere_moves_the_instance() {
        let mut c = Conns::default();
        c.bind(1, "a");
        c.bind(1, "b");
        c.bind(2, "a");
        assert_eq!(c.take_conn(1), HashSet::from(["b".to_owned()]));
        assert_eq!(c.take_conn(2), HashSet::from(["a".to_owned()]));
        c.bind(3, "x");
        c.unbind("x");
        assert!(c.take_conn(3).is_empty());
        assert!(c.by_instance.is_empty() && c.by_conn.is_empty());
    }
}

//! Bulkheads: `#[entrypoint(max_concurrency = N, queue = M)]` lets at most
//! N calls of an entrypoint run at once on an instance and M wait for a
//! turn; a call beyond them is refused at once as overloaded, before it
//! runs, so that its caller can send it to another instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
#[cfg(test)]
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use weft_core::Error;
use weft_core::spec::ServiceSpec;

/// The limits of a service's entrypoints that have one, by name.
#[derive(Debug, Default)]
pub(crate) struct Bulkheads(HashMap<String, Arc<Bulkhead>>);

impl Bulkheads {
    /// The limits `spec` declares.
    pub(crate) fn of(spec: &ServiceSpec) -> Bulkheads {
        Bulkheads(
            spec.entrypoints
                .iter()
                .filter_map(|e| {
                    let max = e.max_concurrency?;
                    let bulkhead = Bulkhead {
                        service: spec.name.clone(),
                        entrypoint: e.name.clone(),
                        running: Arc::new(Semaphore::new(max as usize)),
                        waiting: AtomicU32::new(0),
                        max,
                        queue: e.queue.unwrap_or(0),
                    };
                    Some((e.name.clone(), Arc::new(bulkhead)))
                })
                .collect(),
        )
    }

    /// `entrypoint`'s limit, when it has one.
    pub(crate) fn get(&self, entrypoint: &str) -> Option<Arc<Bulkhead>> {
        self.0.get(entrypoint).cloned()
    }

    /// `call` within `entrypoint`'s limit, when it has one.
    #[cfg(test)]
    fn guard(
        &self,
        entrypoint: &str,
        call: BoxFuture<'static, Result<Bytes, Error>>,
    ) -> BoxFuture<'static, Result<Bytes, Error>> {
        match self.get(entrypoint) {
            Some(b) => b.run(call).boxed(),
            None => call,
        }
    }
}

/// One entrypoint's limit.
#[derive(Debug)]
pub(crate) struct Bulkhead {
    service: String,
    entrypoint: String,
    /// A permit per call that may run at once.
    running: Arc<Semaphore>,
    /// Calls waiting for a permit.
    waiting: AtomicU32,
    max: u32,
    queue: u32,
}

/// Counts a call out of the queue however its wait ends (a permit, or
/// the caller cancelling).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    /// Runs `call` once it has a place, or refuses it at once.
    pub(crate) async fn run(
        self: Arc<Self>,
        call: BoxFuture<'static, Result<Bytes, Error>>,
    ) -> Result<Bytes, Error> {
        let _permit = match self.running.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(self.refusal());
                }
                let _queued = Waiting(&self.waiting);
                self.running
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| self.refusal())?
            }
        };
        call.await
    }

    fn refusal(&self) -> Error {
        Error::overloaded(format!(
            "{}.{} is at its limit on this instance ({} running, {} waiting, as its \
             #[entrypoint(max_concurrency, queue)] says); the call was not run: send it \
             again (weft callers do, to another instance) or add instances (`weft scale`)",
            self.service, self.entrypoint, self.max, self.queue
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(max: u32, queue: u32) -> Bulkheads {
        let mut spec = ServiceSpec {
            name: "shop".into(),
            description: String::new(),
            entrypoints: vec![crate::__private::entrypoint_spec(
                "order",
                "",
                Vec::new(),
                serde_json::Value::Bool(true),
                None,
            )],
            event_handlers: Vec::new(),
            publishes: Vec::new(),
        };
        spec.entrypoints[0] = crate::__private::bulkhead(spec.entrypoints[0].clone(), max, queue);
        Bulkheads::of(&spec)
    }

    #[tokio::test]
    async fn beyond_the_running_and_the_waiting_calls_are_refused_at_once() {
        let limits = limited(2, 1);
        let (open, gate) = tokio::sync::watch::channel(false);
        let held = || {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|o| *o).await;
                Ok(Bytes::from_static(b"ok"))
            }
            .boxed()
        };
        let mut calls: Vec<_> = (0..3)
            .map(|_| tokio::spawn(limits.guard("order", held())))
            .collect();
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        // Two run, one waits: the fourth is refused, unrun.
        let refused = limits.guard("order", held()).await.unwrap_err();
        assert!(refused.is_overloaded(), "{refused}");
        assert!(refused.message().contains("shop.order"), "{refused}");
        // Entrypoints without a limit are not held.
        assert!(limits.guard("other", held()).now_or_never().is_none());
        open.send_replace(true);
        for call in calls.drain(..) {
            assert_eq!(call.await.unwrap().unwrap(), "ok");
        }
        // A caller that gives up while waiting leaves the queue.
        let limits = limited(1, 1);
        let (_open, gate) = tokio::sync::watch::channel(false);
        let held = || {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|o| *o).await;
                Ok(Bytes::new())
            }
            .boxed()
        };
        let running = tokio::spawn(limits.guard("order", held()));
        tokio::task::yield_now().await;
        let mut waiting = limits.guard("order", held());
        assert!((&mut waiting).now_or_never().is_none());
        drop(waiting);
        let mut again = limits.guard("order", held());
        assert!(
            (&mut again).now_or_never().is_none(),
            "the queue has room again: the call waits"
        );
        running.abort();
    }
}

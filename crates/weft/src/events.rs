//! Event handlers at run time: one subscription per handler on the host's
//! event log, each delivery run as its own task and acknowledged with its
//! outcome. The host decides what each instance gets (pool, broadcast,
//! per-key order) and redelivers what is not acknowledged, so this side
//! keeps no state that a crash could lose.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use weft_core::Code;
use weft_core::backoff::Backoff;
use weft_core::codec;
use weft_core::spec::{EventHandlerSpec, ServiceSpec};
use weft_transport::{Address, Pool};

use crate::Error;
use crate::context::{Context, EventInfo};
use crate::router::{call_host_on, host_headers};
use crate::service::{DynService, handle_event};
use weft_host_api::wire::{self as host_api, Ack, Delivery, DeliveryMode, Subscription};

/// Deliveries one instance takes at once per handler, unacknowledged.
pub(crate) const MAX_IN_FLIGHT: u32 = 16;

/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often an acknowledgement is tried before the event is left to the
/// host's redelivery.
const ACK_ATTEMPTS: u32 = 6;

/// The delivery mode a handler's spec asks for.
pub(crate) fn delivery_mode(spec: &EventHandlerSpec) -> Result<DeliveryMode, Error> {
    match (spec.mode.as_str(), &spec.ordered_by) {
        ("pool", None) => Ok(DeliveryMode::Pool),
        ("broadcast", None) => Ok(DeliveryMode::Broadcast),
        ("ordered", Some(field)) => Ok(DeliveryMode::Ordered {
            field: field.clone(),
        }),
        (mode, ordered_by) => Err(Error::invalid_argument(
            "mode",
            format!(
                "event handler `{}` has mode `{mode}` with ordered_by {ordered_by:?}; \
                 use `pool` or `broadcast` without ordered_by, or `ordered` with it",
                spec.name
            ),
        )),
    }
}

/// Checks what the compiler could not: each handler's mode is known, and an
/// `ordered_by` field is a top-level field of the event's type.
pub(crate) fn check(spec: &ServiceSpec) -> Result<(), Error> {
    for h in &spec.event_handlers {
        delivery_mode(h)?;
        let Some(field) = &h.ordered_by else { continue };
        let Some(props) = h.payload.get("properties").and_then(|p| p.as_object()) else {
            continue;
        };
        if !props.contains_key(field) {
            let mut fields: Vec<&str> = props.keys().map(String::as_str).collect();
            fields.sort_unstable();
            return Err(Error::invalid_argument(
                "ordered_by",
                format!(
                    "event handler `{}.{}` orders by `{field}`, but its event has no top-level field `{field}` \
                     (it has {}); fix `ordered_by` in its `#[event_handler]`",
                    spec.name,
                    h.name,
                    if fields.is_empty() {
                        "none".to_owned()
                    } else {
                        fields.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// What every subscription of one instance shares.
pub(crate) struct Subscriber {
    pub(crate) service: Arc<dyn DynService>,
    pub(crate) root: Context,
    pub(crate) pool: Pool,
    pub(crate) host: Address,
    pub(crate) instance: String,
}

impl Subscriber {
    /// Subscribes every handler once `registered` turns true, until `stop`
    /// does; the returned task ends when every handler's in-flight
    /// deliveries are done and acknowledged.
    pub(crate) fn start(
        self: Arc<Self>,
        registered: watch::Receiver<bool>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let handlers = self.service.spec().event_handlers;
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            for h in handlers {
                let mode = match delivery_mode(&h) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(error = %e, "event handler not subscribed");
                        continue;
                    }
                };
                let sub = Subscription {
                    service: self.service.name().to_owned(),
                    handler: h.name,
                    topic: h.topic,
                    instance: self.instance.clone(),
                    mode,
                    max_attempts: h.max_attempts,
                    max_in_flight: MAX_IN_FLIGHT,
                };
                tasks.spawn(
                    self.clone()
                        .follow(Arc::new(sub), registered.clone(), stop.clone()),
                );
            }
            while tasks.join_next().await.is_some() {}
        })
    }

    /// Follows one handler's subscription, subscribing again with backoff
    /// whenever the stream ends (the host restarted), until `stop`.
    async fn follow(
        self: Arc<Self>,
        sub: Arc<Subscription>,
        mut registered: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Subscribing before the instance is registered would have the
        // host see a subscriber it does not know.
        tokio::select! {
            _ = registered.wait_for(|r| *r) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut in_flight = JoinSet::new();
        // Jitter: every subscriber comes back at once when the host restarts.
        let mut backoff = Backoff::new(Duration::from_millis(50), MAX_BACKOFF).with_jitter(0.25);
        'subscribe: loop {
            let conn = tokio::select! {
                c = self.pool.get(&self.host) => c,
                _ = stop.wait_for(|s| *s) => break 'subscribe,
            };
            let outcome = match conn {
                Err(e) => Err(e),
                Ok(conn) => {
                    let payload = match weft_core::args::encode(conn.codec(), &*sub) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(error = %e, handler = %sub.handler, "cannot encode the subscription");
                            break 'subscribe;
                        }
                    };
                    let mut stream =
                        conn.call_stream(host_headers(host_api::SUBSCRIBE, None), payload);
                    tracing::debug!(handler = %sub.handler, topic = %sub.topic, "subscribed");
                    loop {
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|s| *s) => break 'subscribe,
                            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                            item = stream.next() => match item {
                                Some(Ok(bytes)) => {
                                    backoff.reset();
                                    match codec::decode::<Delivery>(conn.codec(), &bytes) {
                                        Ok(d) => {
                                            tracing::trace!(handler = %sub.handler, id = d.id, attempt = d.attempt, "delivery");
                                            in_flight.spawn(self.clone().handle(sub.clone(), d));
                                        }
                                        Err(e) => tracing::error!(
                                            error = %e, handler = %sub.handler,
                                            "the host sent a delivery this SDK cannot read; upgrade weft on one side"
                                        ),
                                    }
                                }
                                Some(Err(e)) => break Err(e),
                                None => break Ok(()),
                            },
                        }
                    }
                }
            };
            let mut delay = backoff.next_delay();
            match outcome {
                Ok(()) => {
                    tracing::debug!(handler = %sub.handler, "subscription ended; subscribing again")
                }
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::debug!(handler = %sub.handler, error = %e, "subscription interrupted; subscribing again")
                }
                Err(e) if e.code() == Code::NotFound => {
                    tracing::warn!(
                        handler = %sub.handler, topic = %sub.topic, error = %e,
                        "the host does not take event subscriptions; is it a `weft host` with the event log?"
                    );
                    // Not a blip: ask again only now and then.
                    delay = MAX_BACKOFF * 5;
                }
                Err(e) => tracing::warn!(
                    handler = %sub.handler, topic = %sub.topic, error = %e,
                    "the host refused the subscription; retrying"
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => break 'subscribe,
            }
        }
        // Dropping the stream (above) told the host to stop delivering; the
        // deliveries already taken finish and are acknowledged.
        while in_flight.join_next().await.is_some() {}
    }

    /// Runs one delivery and acknowledges its outcome.
    async fn handle(self: Arc<Self>, sub: Arc<Subscription>, delivery: Delivery) {
        let ctx = self.root.for_event(EventInfo {
            topic: delivery.topic.clone(),
            id: delivery.id,
            attempt: delivery.attempt,
            published_ms: delivery.published_ms,
        });
        let outcome = handle_event(&*self.service, &sub.handler, ctx, delivery.payload).await;
        let error = match outcome {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(
                    handler = %sub.handler, topic = %delivery.topic, id = delivery.id,
                    attempt = delivery.attempt, max_attempts = sub.max_attempts, error = %e,
                    "event handler failed; the host delivers the event again"
                );
                Some(e.to_string())
            }
        };
        let ack = Ack {
            service: sub.service.clone(),
            handler: sub.handler.clone(),
            topic: delivery.topic,
            instance: sub.instance.clone(),
            id: delivery.id,
            error,
        };
        let backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        for attempt in 1..=ACK_ATTEMPTS {
            match call_host_on::<_, ()>(
                &self.pool,
                &self.host,
                host_api::ACK,
                &ack,
                Duration::from_secs(10),
            )
            .await
            {
                Ok(()) => {
                    tracing::trace!(handler = %ack.handler, id = ack.id, "acknowledged");
                    return;
                }
                // The host no longer waits for this delivery (it restarted,
                // or gave the event to another instance): it redelivers.
                Err(e) if e.code() == Code::NotFound => return,
                Err(e) if attempt == ACK_ATTEMPTS => tracing::warn!(
                    handler = %ack.handler, id = ack.id, error = %e,
                    "cannot acknowledge an event; the host will deliver it again"
                ),
                Err(_) => tokio::time::sleep(backoff.delay(attempt)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn handler(mode: &str, ordered_by: Option<&str>) -> EventHandlerSpec {
        EventHandlerSpec {
            name: "on_order".into(),
            description: String::new(),
            topic: "orders.created".into(),
            mode: mode.into(),
            ordered_by: ordered_by.map(str::to_owned),
            max_attempts: 5,
            payload: json!({ "type": "object", "properties": { "customer": {}, "order": {} } }),
        }
    }

    fn spec(h: EventHandlerSpec) -> ServiceSpec {
        ServiceSpec {
            name: "shop".into(),
            description: String::new(),
            entrypoints: vec![],
            event_handlers: vec![h],
            publishes: vec![],
        }
    }

    #[test]
    fn modes_map_to_the_wire() {
        assert_eq!(
            delivery_mode(&handler("pool", None)).unwrap(),
            DeliveryMode::Pool
        );
        assert_eq!(
            delivery_mode(&handler("broadcast", None)).unwrap(),
            DeliveryMode::Broadcast
        );
        assert_eq!(
            delivery_mode(&handler("ordered", Some("customer"))).unwrap(),
            DeliveryMode::Ordered {
                field: "customer".into()
            }
        );
        assert!(delivery_mode(&handler("ordered", None)).is_err());
        assert!(delivery_mode(&handler("fanout", None)).is_err());
    }

    #[test]
    fn ordered_by_must_name_a_field_of_the_event() {
        assert!(check(&spec(handler("ordered", Some("customer")))).is_ok());
        let err = check(&spec(handler("ordered", Some("custmer")))).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("no top-level field `custmer`")
                && err.message().contains("customer, order"),
            "{err}"
        );
    }
}

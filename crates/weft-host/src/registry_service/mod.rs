//! The host's own wire service, `weft.host` (see [`weft_host_api::wire`]):
//! the registry (register, keepalive, deregister, watch, services),
//! notifications and the event log's publish, subscribe and ack, for the
//! instances and clients connected on the wire.

mod watch_stream;

use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryFutureExt};
use serde::Serialize;
use tokio::sync::watch;
use weft_core::args::Args;
use weft_core::codec::{self, Codec};
use weft_core::{Error, Notification};
use weft_host_api::wire as host_api;
use weft_registry::InstanceInfo;
use weft_transport::{Handler, PeerInfo, Reply};
use weft_wire::Request;

use crate::state::Shared;

/// Answers calls to `weft.host` on wire connections.
#[derive(Debug)]
pub(crate) struct HostHandler {
    pub(crate) shared: Arc<Shared>,
    /// Becomes true when the host stops: watch streams end then, since a
    /// connection drains only once its streams are done.
    pub(crate) stop: watch::Receiver<bool>,
}

const ENTRYPOINTS: [&str; 10] = [
    host_api::REGISTER,
    host_api::KEEPALIVE,
    host_api::DEREGISTER,
    host_api::WATCH,
    host_api::NOTIFY,
    host_api::NOTIFICATIONS,
    host_api::SERVICES,
    host_api::PUBLISH,
    host_api::SUBSCRIBE,
    host_api::ACK,
];

fn unary(result: Result<Bytes, Error>) -> Reply {
    Reply::Unary(futures::future::ready(result).boxed())
}

fn encode<T: Serialize>(codec: Codec, value: &T) -> Result<Bytes, Error> {
    codec::encode(codec, value)
}

impl Handler for HostHandler {
    fn call(&self, request: Request, codec: Codec, peer: &PeerInfo) -> Reply {
        let headers = &request.headers;
        if headers.service != host_api::SERVICE {
            return unary(Err(Error::not_found(format!(
                "this is the weft host; it serves only `{}` on the wire, not `{}`; \
                 call services on their instances directly (the SDK's router resolves them from the host's registry), \
                 or over HTTP at POST /services/{}/{}",
                host_api::SERVICE,
                headers.service,
                headers.service,
                headers.entrypoint
            ))));
        }
        // The event entrypoints take their argument structs whole.
        match headers.entrypoint.as_str() {
            host_api::PUBLISH => {
                return match decode_args::<host_api::PublishArgs>(
                    codec,
                    &request.payload,
                    "{topic, payload, idempotency_key}",
                ) {
                    Ok(args) => {
                        let published = self.shared.events.publish(args);
                        Reply::Unary(async move { encode(codec, &published.await?) }.boxed())
                    }
                    Err(e) => unary(Err(e)),
                };
            }
            host_api::SUBSCRIBE => {
                let sub = match decode_args::<host_api::Subscription>(
                    codec,
                    &request.payload,
                    "{service, handler, topic, instance, mode, max_attempts, max_in_flight}",
                ) {
                    Ok(sub) => sub,
                    Err(e) => return unary(Err(e)),
                };
                let mut stop = self.stop.clone();
                // A subscription that cannot start ends the stream with its
                // error at once, which the caller reads as the call's.
                let deliveries = self.shared.events.subscribe(sub).try_flatten_stream();
                return Reply::Stream(
                    deliveries
                        .map(move |d| d.and_then(|d| encode(codec, &d)))
                        .take_until(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .boxed(),
                );
            }
            host_api::ACK => {
                return match decode_args::<host_api::Ack>(
                    codec,
                    &request.payload,
                    "{service, handler, topic, instance, id, error}",
                ) {
                    Ok(ack) => {
                        let acked = self.shared.events.ack(ack);
                        Reply::Unary(
                            async move {
                                acked.await?;
                                encode(codec, &())
                            }
                            .boxed(),
                        )
                    }
                    Err(e) => unary(Err(e)),
                };
            }
            _ => {}
        }
        let args = match Args::decode_bytes(codec, request.payload.clone()) {
            Ok(args) => args,
            Err(e) => return unary(Err(e)),
        };
        let shared = self.shared.clone();
        match headers.entrypoint.as_str() {
            host_api::REGISTER => {
                unary(register(&shared, args, peer.conn_id).and_then(|r| encode(codec, &r)))
            }
            host_api::KEEPALIVE => unary(
                take_id(args)
                    .and_then(|id| shared.registry.keepalive(&id))
                    .and_then(|()| encode(codec, &())),
            ),
            host_api::DEREGISTER => unary(take_id(args).and_then(|id| {
                shared.registry.deregister(&id);
                encode(codec, &())
            })),
            host_api::WATCH => Reply::Stream(watch_stream::watch_registry(
                shared,
                codec,
                self.stop.clone(),
            )),
            host_api::NOTIFY => Reply::Unary(
                async move {
                    let notification = take_notification(args)?;
                    let stored = shared.notifications.notify(notification).await?;
                    encode(codec, &stored)
                }
                .boxed(),
            ),
            host_api::NOTIFICATIONS => Reply::Unary(
                async move {
                    let mut args = args;
                    let after: Option<u64> = args.take("after")?;
                    let limit: Option<usize> = args.take("limit")?;
                    args.finish(&["after", "limit"])?;
                    let list = shared.notifications.list(after, limit).await?;
                    encode(codec, &list)
                }
                .boxed(),
            ),
            host_api::SERVICES => unary(encode(codec, &shared.registry.services())),
            other => unary(Err(Error::not_found(format!(
                "the weft host has no entrypoint `{other}`; it has {}; is the SDK newer than the host? upgrade the host",
                ENTRYPOINTS
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )))),
        }
    }

    fn disconnected(&self, peer: &PeerInfo) {
        self.shared.registry.disconnected(peer.conn_id);
    }
}

fn register(
    shared: &Shared,
    mut args: Args,
    conn: u64,
) -> Result<weft_registry::RegisterReply, Error> {
    let instance: InstanceInfo = args.take("instance")?;
    args.finish(&["instance"])?;
    let (id, service, version, address) = (
        instance.id.clone(),
        instance.service.clone(),
        instance.version.clone(),
        instance.address.clone(),
    );
    let reply = shared.registry.register(Some(conn), instance)?;
    tracing::info!(%service, %version, instance = %id, %address, "instance registered");
    Ok(reply)
}

/// Decodes the arguments of an event entrypoint: one object with the
/// fields of `T`.
fn decode_args<T: serde::de::DeserializeOwned>(
    codec: Codec,
    payload: &[u8],
    shape: &str,
) -> Result<T, Error> {
    codec::decode(codec, payload).map_err(|e| {
        Error::invalid_argument(
            "args",
            format!(
                "{}; send an object {shape} (see weft_host_api::wire)",
                e.message()
            ),
        )
    })
}

fn take_id(mut args: Args) -> Result<String, Error> {
    let id: String = args.take("id")?;
    args.finish(&["id"])?;
    Ok(id)
}

fn take_notification(mut args: Args) -> Result<Notification, Error> {
    let notification: Notification = args.take("notification")?;
    args.finish(&["notification"])?;
    Ok(notification)
}

//! A served service's event handlers against a stand-in host that speaks the
//! wire contract of `weft_host_api::wire`: each handler subscribes, each delivery
//! runs and is acknowledged with its outcome, a subscription that ends is
//! made again, and shutdown finishes the deliveries in hand.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};
use weft::Server;
use weft_core::codec::{self, Codec};
use weft_host_api::wire::{
    self as host_api, Ack, Delivery, DeliveryMode, RegisterReply, Subscription,
};
use weft_test_support::{TestServer, within};
use weft_transport::{Handler, PeerInfo, Reply};
use weft_wire::Request;

/// Signalled when a `sleep` job starts.
static SLEEPING: Notify = Notify::const_new();

/// The event the test service takes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct Job {
    /// What to do: `ok`, `fail`, `panic`, or `sleep`.
    pub(crate) what: String,
    /// For `sleep`: how long.
    #[serde(default)]
    pub(crate) ms: u64,
}

/// A service with handlers on two topics.
#[derive(Debug, Default)]
pub(crate) struct Worker;

#[weft::service(name = "worker")]
impl Worker {
    /// Does the job.
    #[event_handler(topic = "jobs", ordered_by = "what", max_attempts = 7)]
    async fn work(&self, job: Job) -> weft::Result<()> {
        match job.what.as_str() {
            "fail" => Err(weft::Error::internal("the job failed as asked")),
            "panic" => panic!("the job panicked as asked"),
            "sleep" => {
                SLEEPING.notify_one();
                tokio::time::sleep(Duration::from_millis(job.ms)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Watches every job.
    #[event_handler(topic = "jobs.audit", mode = "broadcast")]
    async fn audit(&self, job: Job) {
        let _ = job;
    }
}

/// What the stand-in host saw, and the ends of its subscription streams.
#[derive(Default)]
struct Seen {
    subscriptions: Vec<Subscription>,
    /// Per subscription, in order: the sender of its deliveries.
    feeds: Vec<mpsc::UnboundedSender<Delivery>>,
}

struct FakeHost {
    seen: Arc<Mutex<Seen>>,
    acks: mpsc::UnboundedSender<Ack>,
    subscribed: mpsc::UnboundedSender<usize>,
}

fn reply<T: serde::Serialize>(codec: Codec, value: &T) -> Reply {
    Reply::Unary(futures::future::ready(codec::encode(codec, value)).boxed())
}

impl Handler for FakeHost {
    fn call(&self, request: Request, codec: Codec, _peer: &PeerInfo) -> Reply {
        let payload = request.payload;
        match request.headers.entrypoint.as_str() {
            host_api::REGISTER => reply(
                codec,
                &RegisterReply {
                    lease_ttl_ms: 60_000,
                    host_epoch: "test".into(),
                },
            ),
            host_api::SUBSCRIBE => {
                let sub: Subscription = codec::decode(codec, &payload).unwrap();
                let (tx, rx) = mpsc::unbounded_channel::<Delivery>();
                let index = {
                    let mut seen = self.seen.lock();
                    seen.subscriptions.push(sub);
                    seen.feeds.push(tx);
                    seen.feeds.len() - 1
                };
                let _ = self.subscribed.send(index);
                let items = tokio_stream(rx).map(move |d| codec::encode(codec, &d));
                Reply::Stream(items.boxed())
            }
            host_api::ACK => {
                let ack: Ack = codec::decode(codec, &payload).unwrap();
                let _ = self.acks.send(ack);
                reply(codec, &())
            }
            // The registry watch: nothing ever changes.
            host_api::WATCH => Reply::Stream(futures::stream::pending().boxed()),
            _ => reply(codec, &()),
        }
    }
}

/// The receiver as a stream (without tokio-stream).
fn tokio_stream<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

struct Harness {
    seen: Arc<Mutex<Seen>>,
    acks: mpsc::UnboundedReceiver<Ack>,
    subscribed: mpsc::UnboundedReceiver<usize>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<weft::Result<()>>,
    _host: TestServer,
}

async fn start() -> Harness {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let (sub_tx, subscribed) = mpsc::unbounded_channel();
    let host = Arc::new(FakeHost {
        seen: seen.clone(),
        acks: acks_tx,
        subscribed: sub_tx,
    });
    let host = TestServer::tcp(host).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = Server::from_env(Worker)
        .unwrap()
        .host(host.addr().clone())
        .listen("127.0.0.1:0".parse().unwrap())
        .shutdown(async move {
            let _ = stopped.await;
        });
    Harness {
        seen,
        acks,
        subscribed,
        stop: Some(stop),
        served: tokio::spawn(server.run()),
        _host: host,
    }
}

impl Harness {
    /// Waits for the next subscription and returns its index.
    async fn next_subscription(&mut self) -> usize {
        within("a subscription", self.subscribed.recv())
            .await
            .expect("the host runs")
    }

    /// The index of the latest subscription of `handler`.
    fn feed(&self, handler: &str) -> mpsc::UnboundedSender<Delivery> {
        let seen = self.seen.lock();
        let i = seen
            .subscriptions
            .iter()
            .rposition(|s| s.handler == handler)
            .unwrap_or_else(|| panic!("`{handler}` never subscribed"));
        seen.feeds[i].clone()
    }

    async fn next_ack(&mut self) -> Ack {
        within("an acknowledgement", self.acks.recv())
            .await
            .expect("the host runs")
    }
}

fn delivery(id: u64, payload: serde_json::Value) -> Delivery {
    Delivery {
        topic: "jobs".into(),
        id,
        payload,
        attempt: 1,
        published_ms: 0,
    }
}

#[tokio::test]
async fn each_handler_subscribes_with_its_mode() {
    let mut h = start().await;
    h.next_subscription().await;
    h.next_subscription().await;
    let mut subs = h.seen.lock().subscriptions.clone();
    subs.sort_by(|a, b| a.handler.cmp(&b.handler));
    assert_eq!(subs[0].handler, "audit");
    assert_eq!(subs[0].topic, "jobs.audit");
    assert_eq!(subs[0].mode, DeliveryMode::Broadcast);
    assert_eq!(subs[1].handler, "work");
    assert_eq!(
        subs[1].mode,
        DeliveryMode::Ordered {
            field: "what".into()
        }
    );
    assert_eq!(subs[1].max_attempts, 7);
    assert_eq!(subs[1].service, "worker");
    assert!(subs[1].max_in_flight > 0);
}

#[tokio::test]
async fn deliveries_are_acknowledged_with_their_outcome() {
    let mut h = start().await;
    h.next_subscription().await;
    h.next_subscription().await;
    let feed = h.feed("work");
    feed.send(delivery(1, json!({ "what": "ok" }))).unwrap();
    feed.send(delivery(2, json!({ "what": "fail" }))).unwrap();
    feed.send(delivery(3, json!({ "what": "panic" }))).unwrap();
    feed.send(delivery(4, json!({ "what": 4 }))).unwrap();
    let mut acks = Vec::new();
    for _ in 0..4 {
        acks.push(h.next_ack().await);
    }
    acks.sort_by_key(|a| a.id);
    assert!(
        acks.iter()
            .all(|a| a.handler == "work" && a.topic == "jobs")
    );
    assert_eq!(acks[0].error, None);
    let errors: Vec<String> = acks[1..].iter().map(|a| a.error.clone().unwrap()).collect();
    assert!(errors[0].contains("the job failed as asked"), "{errors:?}");
    assert!(
        errors[1].contains("worker.work panicked: the job panicked as asked"),
        "{errors:?}"
    );
    assert!(errors[2].contains("does not decode as `Job`"), "{errors:?}");
}

#[tokio::test]
async fn an_ended_subscription_is_made_again() {
    let mut h = start().await;
    h.next_subscription().await;
    h.next_subscription().await;
    // The host forgets the stream, as a restarted host would.
    let i = h
        .seen
        .lock()
        .subscriptions
        .iter()
        .position(|s| s.handler == "work")
        .unwrap();
    h.seen.lock().feeds[i] = mpsc::unbounded_channel().0;
    let again = h.next_subscription().await;
    assert_eq!(h.seen.lock().subscriptions[again].handler, "work");
    h.feed("work")
        .send(delivery(9, json!({ "what": "ok" })))
        .unwrap();
    assert_eq!(h.next_ack().await.id, 9);
}

#[tokio::test]
async fn shutdown_finishes_the_deliveries_in_hand() {
    let mut h = start().await;
    h.next_subscription().await;
    h.next_subscription().await;
    let feed = h.feed("work");
    feed.send(delivery(1, json!({ "what": "sleep", "ms": 500 })))
        .unwrap();
    within("the handler to start", SLEEPING.notified()).await;
    h.stop.take().unwrap().send(()).unwrap();
    let ack = h.next_ack().await;
    assert_eq!((ack.id, ack.error), (1, None));
    within("the server to stop", &mut h.served)
        .await
        .unwrap()
        .unwrap();
    // Nothing is taken after the signal: the subscription is gone.
    within("the subscription to be cancelled", feed.closed()).await;
    assert!(
        h.acks.try_recv().is_err(),
        "only the one delivery was acked"
    );
}

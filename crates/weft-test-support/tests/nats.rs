//! The NATS harnesses against real nats-server processes: what they start
//! serves JetStream, and a cluster keeps what it acknowledged when a node
//! dies.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use weft_test_support::{NatsCluster, NatsServer, poll, within};

/// A stream of `replicas` on `subject`, created through `client`.
async fn create_stream(
    client: async_nats::Client,
    name: &str,
    replicas: usize,
) -> jetstream::stream::Stream {
    let js = jetstream::new(client);
    within(
        &format!("stream {name} to be created"),
        js.create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.>")],
            num_replicas: replicas,
            ..Default::default()
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot create stream {name}: {e}"))
}

#[tokio::test]
async fn a_single_server_serves_jetstream() {
    let nats = NatsServer::start().await;
    assert!(
        nats.url().starts_with("nats://127.0.0.1:"),
        "{}",
        nats.url()
    );
    let client = nats.client().await;
    let stream = create_stream(client.clone(), "single", 1).await;
    let js = jetstream::new(client);
    let ack = within("the publish ack", async {
        js.publish("single.a", "hello".into()).await.unwrap().await
    })
    .await
    .expect("an acknowledged publish");
    assert_eq!(ack.stream, "single");
    let msg = within("the message", stream.get_raw_message(ack.sequence))
        .await
        .expect("the message back");
    assert_eq!(&msg.payload[..], b"hello");
}

#[tokio::test]
async fn a_server_without_jetstream_has_none() {
    let nats = NatsServer::start_without_jetstream().await;
    let js = jetstream::new(nats.client().await);
    let info = within("an account info answer", js.query_account()).await;
    assert!(info.is_err(), "JetStream answered: {info:?}");
}

#[tokio::test]
async fn an_acknowledged_r3_message_survives_a_sigkill_of_its_stream_leader() {
    let mut cluster = NatsCluster::start(3).await;
    let urls = cluster.urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");
    let mut stream = create_stream(cluster.client().await, "orders", 3).await;
    let js = jetstream::new(cluster.client().await);
    // A publish whose ack is lost (the new stream's leader still settling)
    // is sent again; its message id keeps the stream at one copy.
    let ack = poll("an acknowledged publish", || async {
        let publish = PublishMessage::build()
            .payload("paid".into())
            .message_id("paid-1");
        js.send_publish("orders.1", publish).await?.await
    })
    .await;

    // The leader holds the acknowledged message for sure; the others only
    // when a quorum really stored it before the ack.
    let info = within("the stream's info", stream.info())
        .await
        .expect("stream info");
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a stream leader");
    let dead = (0..3)
        .find(|&i| cluster.node(i).server_name() == leader)
        .unwrap_or_else(|| panic!("the leader {leader} is not a node"));
    cluster.kill9(dead).await;

    let survivor = cluster.node((dead + 1) % 3).url();
    // Until the survivors elect a stream leader, a read goes unanswered: a
    // short request timeout retries it soon after they have.
    let options =
        async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_millis(500)));
    let client = within("a client of a survivor", options.connect(&survivor))
        .await
        .expect("a connection to a surviving node");
    let js = jetstream::new(client);
    let read = || async {
        let stream = js.get_stream_no_info("orders").await?;
        let msg = stream.get_raw_message(ack.sequence).await?;
        Ok::<_, async_nats::Error>(msg.payload)
    };
    let payload = poll("the message from the surviving nodes", read).await;
    assert_eq!(&payload[..], b"paid");

    // The killed node comes back on its store and serves the cluster again.
    cluster.restart(dead).await;
    let back = cluster.node(dead).url();
    let js = jetstream::new(within("a client of the restarted node", connect_to(&back)).await);
    let stream = within("the stream", js.get_stream("orders"))
        .await
        .expect("the stream");
    assert_eq!(stream.cached_info().state.messages, 1);
}

async fn connect_to(url: &str) -> async_nats::Client {
    async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

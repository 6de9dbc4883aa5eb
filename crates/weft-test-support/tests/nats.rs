//! The NATS harnesses against real nats-server processes: what they start
//! serves JetStream, and a cluster keeps what it acknowledged when a node
//! dies.

use async_nats::jetstream::{self, stream};
use weft_test_support::{NatsServer, within};

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

//! End-to-end tests of connections and servers over TCP, unix sockets and memory.

mod handler;
mod handshake;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use handler::handler;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_core::Code;
use weft_test_support::{TestServer, close_wait_to, within};
use weft_transport::{
    Address, ConnectOptions, Connection, Pool, ServerOptions, memory_pair, serve_connection,
};
use weft_wire::{
    Codec, CodecSet, Decoded, Frame, FrameDecoder, Headers, Preface, Request, ServerHello,
};

fn h(entrypoint: &str) -> Headers {
    Headers::new("test", entrypoint)
}

async fn connect(addr: &Address) -> Connection {
    Connection::connect(addr, &ConnectOptions::default())
        .await
        .expect("connect")
}

async fn assert_echo(conn: &Connection) {
    let reply = within(
        "echo",
        conn.call(h("echo"), Bytes::from_static(b"\"hello\"")),
    )
    .await
    .unwrap();
    assert_eq!(&reply[..], b"\"hello\"");
}

#[tokio::test]
async fn unary_round_trip_over_tcp() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    assert_eq!(conn.codec(), Codec::MsgPack);
    assert_eq!(conn.peer(), server.addr());
    assert_echo(&conn).await;

    let err = conn.call(h("fail"), Bytes::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::Application);
    assert_eq!(err.kind(), Some("OutOfDice"));
    assert_eq!(conn.outstanding(), 0);
    server.stop().await;
}

#[tokio::test]
async fn unary_round_trip_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("weft.sock"));
    // A stale socket file from an earlier process must not stop the bind.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("weft.sock")).unwrap());
    let (handler, _events) = handler();
    let server = TestServer::start(&addr, handler, ServerOptions::default()).await;
    assert_eq!(server.addr(), &addr);
    let conn = connect(&addr).await;
    assert_echo(&conn).await;
    server.stop().await;
}

#[tokio::test]
async fn unary_round_trip_over_memory_with_json() {
    let (handler, _events) = handler();
    let (client, server) = memory_pair();
    let opts = ServerOptions {
        codecs: CodecSet::only(Codec::Json),
        ..Default::default()
    };
    let served = tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        handler,
        opts,
        futures::future::pending(),
    ));
    let conn = Connection::handshake(client, &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(conn.codec(), Codec::Json);
    assert_echo(&conn).await;
    let err = conn.call(h("fail"), Bytes::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::Application);
    drop(conn);
    within("serve_connection to end", served)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_on_one_connection() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let calls = (0..125).map(|i| {
                let payload = Bytes::from(format!("{t}-{i}"));
                let call = conn.call(h("echo"), payload.clone());
                async move { (payload, call.await) }
            });
            for (sent, got) in futures::future::join_all(calls).await {
                assert_eq!(got.unwrap(), sent);
            }
        }));
    }
    for task in tasks {
        within("calls", task).await.unwrap();
    }
    assert_eq!(conn.outstanding(), 0);
    server.stop().await;
}

async fn mixed_calls(conn: &Connection) {
    let calls = (0..300).map(|i| {
        let (entrypoint, payload) = match i % 5 {
            0 => ("echo", Bytes::from(format!("small {i}"))),
            // Large payloads are queued by reference and written with vectored writes,
            // between small frames.
            1 => ("echo", Bytes::from(vec![b'a' + (i % 26) as u8; 20_000 + i])),
            2 => ("yield", Bytes::from(format!("later {i}"))),
            3 => ("yield", Bytes::from(vec![b'z'; 5_000 + i])),
            _ => ("panic", Bytes::new()),
        };
        let call = conn.call(h(entrypoint), payload.clone());
        async move { (entrypoint, payload, call.await) }
    });
    for (entrypoint, sent, got) in futures::future::join_all(calls).await {
        if entrypoint == "panic" {
            let err = got.unwrap_err();
            assert_eq!(err.code(), Code::Internal, "{err}");
            assert!(err.message().contains("panicked"), "{err}");
        } else {
            assert_eq!(got.unwrap(), sent, "{entrypoint}");
        }
    }
}

#[tokio::test]
async fn handlers_ready_at_once_and_later_large_and_small_payloads_all_arrive() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    within("mixed calls", mixed_calls(&conn)).await;
    assert_eq!(conn.outstanding(), 0);
    let err = conn.call(h("panic_later"), Bytes::new()).await.unwrap_err();
    assert!(err.message().contains("panicked"), "{err}");
    assert_echo(&conn).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_calls_from_two_threads() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { mixed_calls(&conn).await })
        })
        .collect();
    for task in tasks {
        within("mixed calls", task).await.unwrap();
    }
    assert_eq!(conn.outstanding(), 0);
    server.stop().await;
}

#[tokio::test]
async fn mixed_calls_over_memory() {
    let (handler, _events) = handler();
    let (client, server) = memory_pair();
    let served = tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        handler,
        ServerOptions::default(),
        std::future::pending(),
    ));
    let conn = Connection::handshake(client, &ConnectOptions::default())
        .await
        .unwrap();
    within("mixed calls", mixed_calls(&conn)).await;
    assert_eq!(conn.outstanding(), 0);
    served.abort();
}

#[tokio::test]
async fn the_client_deadline_fails_the_call_and_cancels_the_handler() {
    let (handler, mut events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    // No server-side timeout: only the client's deadline can end these.
    let now = tokio::time::Instant::now();
    let far = conn.call_with_deadline(h("hang"), "far".into(), now + Duration::from_secs(60));
    let near = conn.call_with_deadline(h("hang"), "near".into(), now + Duration::from_millis(30));
    let err = within("deadline", near).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(now.elapsed() >= Duration::from_millis(30));
    // The handler of the call that timed out is stopped; the other one goes on.
    assert_eq!(within("drop", events.dropped.recv()).await.unwrap(), "near");
    assert_eq!(conn.outstanding(), 1);
    drop(far);
    assert_eq!(within("drop", events.dropped.recv()).await.unwrap(), "far");
    // A call that answers in time is not affected by its deadline.
    let reply = conn
        .call_with_deadline(
            h("echo"),
            "ok".into(),
            tokio::time::Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&reply[..], b"ok");
    server.stop().await;
}

#[tokio::test]
async fn server_streaming() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;

    let items: Vec<_> = within(
        "stream",
        conn.call_stream(h("stream"), "4".into()).collect(),
    )
    .await;
    let items: Vec<Bytes> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(items, ["0", "1", "2", "3"]);

    let items: Vec<_> = within(
        "stream",
        conn.call_stream(h("stream_fail"), Bytes::new()).collect(),
    )
    .await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[1].as_ref().unwrap(), "b");
    assert_eq!(items[2].as_ref().unwrap_err().code(), Code::Internal);
    assert_eq!(conn.outstanding(), 0);
    server.stop().await;
}

#[tokio::test]
async fn dropping_a_call_cancels_the_handler() {
    let (handler, mut events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;

    let call = conn.call(h("hang"), "unary".into());
    assert_eq!(
        within("start", events.started.recv()).await.unwrap(),
        "unary"
    );
    assert_eq!(conn.outstanding(), 1);
    drop(call);
    assert_eq!(conn.outstanding(), 0);
    assert_eq!(
        within("drop", events.dropped.recv()).await.unwrap(),
        "unary"
    );

    // The same through `tokio::time::timeout`, as the SDK does it.
    let timed = tokio::time::timeout(
        Duration::from_millis(20),
        conn.call(h("hang"), "timed".into()),
    );
    assert!(timed.await.is_err());
    assert_eq!(
        within("drop", events.dropped.recv()).await.unwrap(),
        "timed"
    );

    // The connection is still fine.
    assert_echo(&conn).await;
    server.stop().await;
}

#[tokio::test]
async fn the_deadline_is_enforced_by_the_server() {
    let (handler, mut events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    let mut headers = h("hang");
    headers.timeout = Some(Duration::from_millis(30));
    let err = within("deadline", conn.call(headers, "deadline".into()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert_eq!(
        within("drop", events.dropped.recv()).await.unwrap(),
        "deadline"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_frames_get_resource_exhausted_and_the_connection_goes_on() {
    let (handler, _events) = handler();
    let opts = ServerOptions {
        max_frame_size: 1024,
        ..Default::default()
    };
    let server = TestServer::start(&"127.0.0.1:0".parse().unwrap(), handler, opts).await;

    // A well-behaved client refuses to send it, with the same clear error.
    let conn = connect(server.addr()).await;
    let err = conn
        .call(h("echo"), Bytes::from(vec![b'x'; 2000]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("frame limit"), "{err}");
    // Large payloads take another write path; the same limit holds.
    let err = conn
        .call(h("echo"), Bytes::from(vec![b'x'; 10_000]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("request of 10"), "{err}");
    // A reply over the limit is an error for the caller, not a broken connection.
    let err = conn.call(h("big"), "5000".into()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert_echo(&conn).await;

    // A client that sends it anyway gets an error for that call, on the same connection.
    let mut raw = Raw::connect(server.addr()).await;
    let big = Request::new(5, "test", "echo", vec![b'x'; 4000]);
    raw.send(&Frame::Request(big)).await;
    raw.send(&Frame::Request(Request::new(
        6,
        "test",
        "echo",
        &b"after"[..],
    )))
    .await;
    let Some(Frame::Error { id: 5, payload }) = raw.next().await else {
        panic!("expected an error for call 5");
    };
    let err: weft_core::Error = weft_core::codec::decode(Codec::Json, &payload).unwrap();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("request of 4"), "{err}");
    assert_eq!(
        raw.next().await,
        Some(Frame::Response {
            id: 6,
            payload: Bytes::from_static(b"after")
        })
    );
    drop(raw);
    server.stop().await;
}

#[tokio::test]
async fn garbage_after_the_handshake_gets_a_go_away_and_others_are_still_served() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;

    let mut raw = Raw::connect(server.addr()).await;
    raw.stream
        .write_all(&[0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    match raw.next().await {
        Some(Frame::GoAway { reason, .. }) => assert!(reason.contains("corrupt"), "{reason}"),
        other => panic!("expected a go-away, got {other:?}"),
    }
    assert_eq!(
        raw.next().await,
        None,
        "the server should close the connection"
    );

    // A frame of an unknown kind is answered for its id; the connection goes on.
    let mut raw = Raw::connect(server.addr()).await;
    raw.stream
        .write_all(&[0, 0, 0, 10, 200, 0, 0, 0, 0, 0, 0, 0, 0, 9])
        .await
        .unwrap();
    raw.send(&Frame::Ping { data: 3 }).await;
    assert!(matches!(raw.next().await, Some(Frame::Error { id: 9, .. })));
    assert_eq!(raw.next().await, Some(Frame::Pong { data: 3 }));

    assert_echo(&conn).await;
    assert_echo(&connect(server.addr()).await).await;
    server.stop().await;
}

#[tokio::test]
async fn an_http_request_fails_the_handshake_cleanly() {
    let (handler, _events) = handler();
    let (mut client, server) = memory_pair();
    let served = tokio::spawn(serve_connection(
        server,
        BytesMut::new(),
        handler,
        ServerOptions::default(),
        futures::future::pending(),
    ));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let err = within("serve_connection", served)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.message().contains("HTTP"), "{err}");

    // And the client side: a peer answering HTTP is named as such.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Address = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    });
    let err = Connection::connect(&addr, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("HTTP"), "{err}");
    assert!(err.message().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn connect_errors_say_what_to_do() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Address = listener.local_addr().unwrap().to_string().parse().unwrap();
    drop(listener);
    let err = Connection::connect(&addr, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("WEFT_HOST"), "{err}");
    assert!(err.message().contains(&addr.to_string()), "{err}");

    // A rejected credential comes back with the server's reason.
    let (handler, _events) = handler();
    let opts = ServerOptions {
        authenticate: Some(Arc::new(|c: Option<&str>| match c {
            Some("secret") => Ok(()),
            _ => Err("bad mesh credential; set WEFT_TOKEN".to_owned()),
        })),
        ..Default::default()
    };
    let server = TestServer::start(&"127.0.0.1:0".parse().unwrap(), handler, opts).await;
    let err = Connection::connect(server.addr(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(err.message().contains("bad mesh credential"), "{err}");
    let opts = ConnectOptions {
        credential: Some("secret".into()),
        ..Default::default()
    };
    assert_echo(&Connection::connect(server.addr(), &opts).await.unwrap()).await;
    server.stop().await;

    // A process that accepts but never answers (stopped, hung) is told
    // apart from nobody being there.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Address = hung.local_addr().unwrap().to_string().parse().unwrap();
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let err = Connection::connect(&addr, &opts).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("did not answer weft's handshake")
            && err.message().contains("stopped, hung"),
        "{err}"
    );
    drop(hung);
}

#[tokio::test]
async fn the_pool_shares_a_dial_and_redials_after_a_restart() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler.clone()).await;
    let addr = server.addr().clone();
    let pool = Pool::new(ConnectOptions::default());

    let (a, b) = tokio::join!(pool.get(&addr), pool.get(&addr));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_echo(&a).await;
    let call = a.call(h("slow"), "x".into());
    assert_eq!(
        pool.outstanding(&addr),
        1,
        "both gets must share one connection"
    );
    assert_eq!(b.outstanding(), 1);
    drop(call);

    server.stop().await;
    within("the connection to close", a.closed()).await;
    assert!(a.is_closed());
    let err = a.call(h("echo"), Bytes::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    let server = TestServer::start(&addr, handler, ServerOptions::default()).await;
    let c = pool.get(&addr).await.unwrap();
    assert!(!c.is_closed());
    assert_echo(&c).await;
    pool.forget(&addr);
    assert_eq!(pool.outstanding(&addr), 0);
    server.stop().await;
}

#[tokio::test]
async fn the_pool_closes_the_socket_of_a_peer_that_went_away() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let addr = server.addr().clone();
    let Address::Tcp(hostport) = &addr else {
        panic!("a TCP test server")
    };
    let port: u16 = hostport.rsplit(':').next().unwrap().parse().unwrap();
    let pool = Pool::new(ConnectOptions::default());
    let conn = pool.get(&addr).await.unwrap();
    assert_echo(&conn).await;
    drop(conn);

    // The peer goes away and nobody asks the pool for it again: its
    // socket must not stay half-open.
    server.stop().await;
    weft_test_support::poll("the client's socket to the gone peer closed", || async {
        let left = close_wait_to(&[port]);
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} socket(s) in CLOSE-WAIT"))
        }
    })
    .await;
    assert_eq!(pool.outstanding(&addr), 0);
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_calls() {
    let (handler, mut events) = handler();
    let mut server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    let mut raw = Raw::connect(server.addr()).await;

    let slow = tokio::spawn(conn.call(h("slow"), "client".into()));
    raw.send(&Frame::Request(Request::new(
        1,
        "test",
        "slow",
        &b"raw"[..],
    )))
    .await;
    let mut started = vec![
        within("start", events.started.recv()).await.unwrap(),
        within("start", events.started.recv()).await.unwrap(),
    ];
    started.sort();
    assert_eq!(started, ["client", "raw"]);

    server.begin_shutdown();
    within("go-away", conn.closed()).await;
    let err = conn.call(h("echo"), Bytes::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    match raw.next().await {
        Some(Frame::GoAway { last_id: 1, reason }) => assert!(reason.contains("shutting down")),
        other => panic!("expected a go-away, got {other:?}"),
    }
    // A request that reaches the server during the drain is refused, retryably.
    raw.send(&Frame::Request(Request::new(
        2,
        "test",
        "echo",
        &b"late"[..],
    )))
    .await;
    let Some(Frame::Error { id: 2, payload }) = raw.next().await else {
        panic!("expected an error for the late call");
    };
    let err: weft_core::Error = weft_core::codec::decode(Codec::Json, &payload).unwrap();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("shutting down; retry"), "{err}");
    assert!(!server.is_finished());

    events.release.notify_waiters();
    assert_eq!(
        &within("slow call", slow).await.unwrap().unwrap()[..],
        b"client"
    );
    assert_eq!(
        raw.next().await,
        Some(Frame::Response {
            id: 1,
            payload: Bytes::from_static(b"raw")
        })
    );
    assert_eq!(raw.next().await, None);
    server.stop().await;
}

#[tokio::test]
async fn disconnected_is_called_when_the_client_leaves() {
    let (handler, mut events) = handler();
    let server = TestServer::tcp(handler).await;
    let conn = connect(server.addr()).await;
    assert_echo(&conn).await;
    drop(conn);
    within("disconnected", events.disconnected.recv())
        .await
        .unwrap();

    // A client that leaves mid-call: its handler is stopped too.
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&Frame::Request(Request::new(
        1,
        "test",
        "hang",
        &b"orphan"[..],
    )))
    .await;
    assert_eq!(
        within("start", events.started.recv()).await.unwrap(),
        "orphan"
    );
    drop(raw);
    within("disconnected", events.disconnected.recv())
        .await
        .unwrap();
    assert_eq!(
        within("drop", events.dropped.recv()).await.unwrap(),
        "orphan"
    );
    server.stop().await;
}

#[tokio::test]
async fn pings_are_answered() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    let opts = ConnectOptions {
        ping_interval: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let conn = Connection::connect(server.addr(), &opts).await.unwrap();
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&Frame::Ping { data: 42 }).await;
    assert_eq!(raw.next().await, Some(Frame::Pong { data: 42 }));
    // Several ping rounds pass without the connection being declared dead.
    for _ in 0..5 {
        assert_echo(&conn).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!conn.is_closed());
    server.stop().await;
}

/// A hand-driven client, for sending what a well-behaved client never sends.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Raw {
    async fn connect(addr: &Address) -> Raw {
        let Address::Tcp(hostport) = addr else {
            panic!("tcp only")
        };
        let mut stream = TcpStream::connect(hostport.as_str()).await.unwrap();
        let mut buf = BytesMut::new();
        Preface::new(CodecSet::only(Codec::Json)).encode(&mut buf);
        stream.write_all(&buf).await.unwrap();
        buf.clear();
        let max = loop {
            if let Some(hello) = ServerHello::decode(&mut buf).unwrap() {
                match hello {
                    ServerHello::Accepted { max_frame_size, .. } => break max_frame_size,
                    ServerHello::Rejected { reason } => panic!("rejected: {reason}"),
                }
            }
            assert!(within("hello", stream.read_buf(&mut buf)).await.unwrap() > 0);
        };
        Raw {
            stream,
            buf,
            decoder: FrameDecoder::new(max),
        }
    }

    async fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out, u32::MAX).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(Decoded::Frame(f)) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match within("a frame", self.stream.read_buf(&mut self.buf)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

//! Handshakes that must be refused with a reason the client can read, over TCP.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_core::Code;
use weft_test_support::{TestServer, within};
use weft_transport::{Address, ConnectOptions, Connection, ServerOptions};
use weft_wire::{CodecSet, MIN_MAX_FRAME_SIZE, Preface, ServerHello};

use crate::handler::handler;

/// Sends `preface` as raw bytes and returns the server's hello.
async fn hello_for(addr: &Address, preface: &[u8]) -> ServerHello {
    let Address::Tcp(hostport) = addr else {
        panic!("tcp only")
    };
    let mut stream = TcpStream::connect(hostport.as_str()).await.unwrap();
    stream.write_all(preface).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(hello) = ServerHello::decode(&mut buf).unwrap() {
            return hello;
        }
        let n = within("the server hello", stream.read_buf(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "the server closed the connection without a hello");
    }
}

fn encoded(preface: &Preface) -> BytesMut {
    let mut buf = BytesMut::new();
    preface.encode(&mut buf);
    buf
}

#[tokio::test]
async fn a_frame_size_limit_below_the_minimum_is_refused_with_a_reason() {
    let (handler, _events) = handler();
    let server = TestServer::tcp(handler).await;
    for small in [0, MIN_MAX_FRAME_SIZE - 1] {
        let preface = Preface::new(CodecSet::ALL).with_max_frame_size(small);
        let hello = hello_for(server.addr(), &encoded(&preface)).await;
        let ServerHello::Rejected { reason } = hello else {
            panic!("a limit of {small} bytes was accepted: {hello:?}");
        };
        assert!(
            reason.contains(&format!("frame size limit of {small} bytes"))
                && reason.contains("max_frame_size"),
            "{reason}"
        );
    }

    // A well-behaved client refuses before dialling.
    let opts = ConnectOptions {
        max_frame_size: 0,
        ..Default::default()
    };
    let err = Connection::connect(server.addr(), &opts).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message()
            .contains(&format!("below the minimum of {MIN_MAX_FRAME_SIZE} bytes")),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_with_a_tiny_frame_size_limit_tells_its_clients() {
    let (handler, _events) = handler();
    let opts = ServerOptions {
        max_frame_size: 0,
        ..Default::default()
    };
    let server = TestServer::start(&"127.0.0.1:0".parse().unwrap(), handler, opts).await;
    let err = Connection::connect(server.addr(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.message().contains("rejected the connection")
            && err
                .message()
                .contains("configured with a frame size limit of 0 bytes"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_credential_that_is_not_utf8_gets_a_reason() {
    let (handler, _events) = handler();
    let opts = ServerOptions {
        authenticate: Some(Arc::new(|c: Option<&str>| match c {
            Some("secret") => Ok(()),
            _ => Err("bad mesh credential".to_owned()),
        })),
        ..Default::default()
    };
    let server = TestServer::start(&"127.0.0.1:0".parse().unwrap(), handler, opts).await;
    let mut preface = encoded(&Preface::new(CodecSet::ALL).with_credential("secreT"));
    let n = preface.len();
    preface[n - 1] = 0xFF;
    let hello = hello_for(server.addr(), &preface).await;
    let ServerHello::Rejected { reason } = hello else {
        panic!("a credential that is not UTF-8 was accepted: {hello:?}");
    };
    assert!(reason.contains("not valid UTF-8"), "{reason}");
    server.stop().await;
}

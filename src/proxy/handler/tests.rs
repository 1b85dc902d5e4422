//! The connection handler driven in-process: the client is one end of an in-memory pipe,
//! the upstream a real socket on 127.0.0.1. Each test uses its own listener name, so its
//! metric series are its own.

use super::*;
use crate::routes::RouteStore;
use snigate_core::names::{parse_pinned, parse_upstream, SniPattern};
use snigate_core::routes::{Route, RouteTable};
use std::time::Duration;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::net::TcpListener;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clienthello")
        .join(name);
    std::fs::read(path).unwrap()
}

fn limits() -> Limits {
    Limits {
        clienthello_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        max_connections: 10,
    }
}

/// An upstream on 127.0.0.1 that echoes every byte, then closes after the client's EOF.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A handler for listener `name` routing `sni` to `to`, and the client end of a pipe it
/// is handling.
fn start(
    name: &str,
    sni: &str,
    to: SocketAddr,
    limits: Limits,
) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let mut up = parse_upstream(&format!("{sni}:{}", to.port())).unwrap();
    up.pinned = vec![parse_pinned(&to.ip().to_string()).unwrap()];
    let table = RouteTable::new([Route::new(SniPattern::Exact(sni.into()), up)]).unwrap();
    let listener = ListenerConfig::new(name, "127.0.0.1:9092".parse().unwrap());
    let store = Arc::new(RouteStore::new(table));
    let shared = Arc::new(Shared::new(
        limits,
        std::slice::from_ref(&listener),
        store,
        Duration::from_secs(10),
    ));
    metrics::init_listeners([name]);
    let handler = Handler::new(listener, shared);
    let (client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        handler
            .handle(server, "10.9.8.7:5000".parse().ok(), 9092, None)
            .await
    });
    (client, task)
}

fn connections(listener: &str, route: &str, outcome: Outcome) -> u64 {
    metrics::CONNECTIONS
        .with_label_values(&[listener, route, outcome.as_str()])
        .get()
}

#[tokio::test]
async fn relays_the_hello_and_the_data_both_ways() {
    let up = echo_upstream().await;
    let (mut client, task) = start("t-relay", "openssl.capture.test", up, limits());
    let hello = fixture("openssl.bin");
    client.write_all(&hello).await.unwrap();
    client.write_all(b"after the hello").await.unwrap();
    client.shutdown().await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert_eq!(
        &back[..hello.len()],
        &hello[..],
        "the hello is replayed unchanged"
    );
    assert_eq!(&back[hello.len()..], b"after the hello");
    task.await.unwrap();
    assert_eq!(
        connections("t-relay", "openssl.capture.test", Outcome::Ok),
        1
    );
    let up_bytes = metrics::BYTES
        .with_label_values(&["t-relay", "upstream"])
        .get();
    assert_eq!(up_bytes, (hello.len() + 15) as u64);
}

#[tokio::test]
async fn an_unknown_name_gets_the_unrecognized_name_alert() {
    let up = echo_upstream().await;
    let (mut client, task) = start("t-unknown", "other.test", up, limits());
    client.write_all(&fixture("curl.bin")).await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, ALERT_UNRECOGNIZED_NAME);
    task.await.unwrap();
    assert_eq!(connections("t-unknown", "-", Outcome::NoRoute), 1);
}

#[tokio::test]
async fn bytes_that_are_not_tls_are_refused_and_counted() {
    let up = echo_upstream().await;
    let (mut client, task) = start("t-nottls", "a.test", up, limits());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert!(back.is_empty());
    task.await.unwrap();
    let rejects = metrics::REJECTS
        .with_label_values(&["t-nottls", "not_tls"])
        .get();
    assert_eq!(rejects, 1);
    assert_eq!(
        connections("t-nottls", "-", Outcome::ClientHelloRejected),
        1
    );
}

#[tokio::test]
async fn a_connection_over_the_limit_is_closed_at_once() {
    let up = echo_upstream().await;
    let full = Limits {
        max_connections: 0,
        ..limits()
    };
    let (mut client, task) = start("t-limit", "a.test", up, full);
    task.await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert!(back.is_empty());
    assert_eq!(connections("t-limit", "-", Outcome::OverLimit), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hello_cut_short_is_refused_at_the_deadline() {
    let up = echo_upstream().await;
    let (mut client, task) = start("t-deadline", "openssl.capture.test", up, limits());
    let hello = fixture("openssl.bin");
    client.write_all(&hello[..10]).await.unwrap();
    task.await.unwrap();
    let rejects = metrics::REJECTS
        .with_label_values(&["t-deadline", "timeout"])
        .get();
    assert_eq!(rejects, 1);
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_counted_as_empty() {
    let up = echo_upstream().await;
    let (client, task) = start("t-empty", "a.test", up, limits());
    drop(client);
    task.await.unwrap();
    assert_eq!(connections("t-empty", "-", Outcome::Empty), 1);
}

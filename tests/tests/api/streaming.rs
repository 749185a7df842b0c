//! Streaming through the gateway: the size limit holds mid-stream, slow clients still succeed.

use crate::helpers::spawn_stack;
use bytes::Bytes;
use imaging_e2e::fixtures::jpeg;
use std::time::Duration;

#[tokio::test]
async fn a_ten_megabyte_plus_one_byte_upload_is_refused_with_413_and_nothing_is_stored() {
    let stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let mut bytes = jpeg(64, 64);
    bytes.resize(10 * 1024 * 1024 + 1, 0);

    let declared = stack
        .post_raw(
            "/api/image/v1.0/receipt",
            &token,
            "image/jpeg",
            bytes.clone(),
        )
        .await;
    assert_eq!(declared.status(), 413, "refused from Content-Length");

    // Chunked, with no Content-Length: the gateway must count and stop at the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(512 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let streamed = stack
        .http
        .post(stack.url("/api/image/v1.0/receipt"))
        .header("Authorization", format!("OAuth {token}"))
        .header("Content-Type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert!(stack.objects().await.is_empty());
    assert_eq!(stack.used("w1").await, 0);
}

#[tokio::test]
async fn a_slow_client_sending_small_pieces_with_pauses_still_succeeds() {
    let stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let bytes = jpeg(200, 150);
    let pieces: Vec<Bytes> = bytes.chunks(997).map(Bytes::copy_from_slice).collect();
    let body = futures::stream::unfold(pieces.into_iter(), |mut rest| async move {
        let next = rest.next()?;
        tokio::time::sleep(Duration::from_millis(40)).await;
        Some((Ok::<_, std::io::Error>(next), rest))
    });
    let response = stack
        .http
        .post(stack.url("/api/image/v1.0/receipt"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let objects = stack.objects().await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].size, bytes.len() as u64);
}

/// Sends a request head and `body` over a raw connection, then drops the connection without
/// finishing the body.
async fn dropped_mid_body(stack: &crate::helpers::TestStack, head: String, body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let addr = stack.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_connection_dropped_mid_body_stores_nothing_chunked_or_not() {
    let stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let bytes = jpeg(400, 300);

    // Content-Length promises more than arrives.
    let head = format!(
        "POST /api/image/v1.0/receipt HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth {token}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        bytes.len() + 10
    );
    dropped_mid_body(&stack, head, &bytes).await;

    // Chunked: the whole file arrives, but never the last (empty) chunk.
    let head = format!(
        "POST /api/image/v1.0/receipt HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth {token}\r\n\
         Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut body = Vec::new();
    for piece in bytes.chunks(8192) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    dropped_mid_body(&stack, head, &body).await;

    assert!(stack.objects().await.is_empty(), "nothing stored");
    assert_eq!(stack.used("w1").await, 0, "nothing charged");

    // The same bytes, finished properly, are stored: the cut, not the file, was refused.
    let response = stack
        .post_raw(
            "/api/image/v1.0/receipt",
            &token,
            "image/jpeg",
            bytes.clone(),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(stack.objects().await.len(), 1);
}

#[tokio::test]
async fn a_half_sent_request_line_is_closed_by_the_gateway_within_its_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = crate::helpers::spawn_stack_tuned(
        |_| {},
        |gateway| {
            gateway.server.header_read_timeout_seconds = 1;
            gateway.server.idle_timeout_seconds = 1;
        },
    )
    .await;
    let addr = stack.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"POST /api/image/v1.0/rec").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the gateway kept a half-sent request open for 10 s"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn silent_connections_cannot_take_every_slot_of_the_gateway_for_long() {
    let stack = crate::helpers::spawn_stack_tuned(
        |_| {},
        |gateway| {
            gateway.server.max_connections = 4;
            gateway.server.idle_timeout_seconds = 1;
            gateway.server.header_read_timeout_seconds = 1;
        },
    )
    .await;
    let addr = stack.base.trim_start_matches("http://").to_owned();
    // Every slot taken by silent connections from four addresses (one each: a quarter of the
    // cap per address).
    let mut silent = Vec::new();
    for n in 2..6 {
        silent.push(connect_from([127, 0, 0, n], &addr).await);
    }
    let started = std::time::Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        stack.http.get(stack.url("/healthz")).send(),
    )
    .await
    .expect("answered once the silent connections time out")
    .unwrap();
    assert_eq!(response.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "the cap held the request back until idle connections were closed ({waited:?})"
    );
    // With room under the cap, a second connection from an address holding its share is
    // closed at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _first = connect_from([127, 0, 0, 6], &addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = connect_from([127, 0, 0, 6], &addr).await;
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(500), extra.read(&mut buf))
        .await
        .expect("closed at once, not left to time out");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(silent);
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: [u8; 4], addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

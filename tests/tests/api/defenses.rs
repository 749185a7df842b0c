//! The gateway's defenses on its multipart routes, over real HTTP: no byte of a form read
//! without a token, at most 64 KiB and a few seconds before the file part, whatever the form's
//! shape (a header that never ends, a large field, a trickle).

use crate::helpers::spawn_stack;
use bytes::Bytes;
use imaging_e2e::fixtures::jpeg;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const V3: &str = "/api/v3.0/expense/receiptimages";
const BOUNDARY: &str = "XyZ";

fn workspace_route() -> String {
    "/api/v1/client/workspace/w1/expenses/e1/receipt".to_owned()
}

/// A body that sends `first`, then `then` every `every`, `times` times.
fn endless(first: Vec<u8>, then: Vec<u8>, every: Duration, times: usize) -> reqwest::Body {
    counted(first, then, every, times).0
}

/// [`endless`], and the count of bytes the client has been asked for so far.
fn counted(
    first: Vec<u8>,
    then: Vec<u8>,
    every: Duration,
    times: usize,
) -> (reqwest::Body, Arc<AtomicUsize>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let stream = futures::stream::unfold((Some(first), 0usize), move |(first, sent)| {
        let then = then.clone();
        let counter = counter.clone();
        async move {
            if let Some(first) = first {
                counter.fetch_add(first.len(), Ordering::Relaxed);
                return Some((Ok::<_, std::io::Error>(Bytes::from(first)), (None, 0)));
            }
            if sent >= times {
                return None;
            }
            tokio::time::sleep(every).await;
            counter.fetch_add(then.len(), Ordering::Relaxed);
            Some((Ok(Bytes::from(then)), (None, sent + 1)))
        }
    });
    (reqwest::Body::wrap_stream(stream), pulled)
}

fn form_request(
    stack: &crate::helpers::TestStack,
    path: &str,
    token: Option<&str>,
    body: reqwest::Body,
) -> reqwest::RequestBuilder {
    let mut request = stack
        .http
        .post(stack.url(path))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_a_token_is_refused_before_its_body_is_read() {
    let stack = spawn_stack().await;
    // A part header that never ends: 64 KiB of header bytes every 10 ms, for 256 MiB.
    let start = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"\r\nX: ")
        .into_bytes();
    for path in [V3.to_owned(), workspace_route()] {
        let started = Instant::now();
        let (body, pulled) = counted(
            start.clone(),
            vec![b'a'; 64 * 1024],
            Duration::from_millis(10),
            4096,
        );
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            form_request(&stack, &path, None, body).send(),
        )
        .await
        .expect("answered at once");
        let response = response.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
        // Of the 256 MiB offered, the client was asked for next to nothing (what fits in the
        // socket buffers at most): the gateway read none of it.
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(pulled < 8 << 20, "{path}: {pulled} bytes pulled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_field_or_endless_header_before_the_file_is_refused_on_every_form_route() {
    let stack = spawn_stack().await;
    stack
        .register_target(
            imaging_proto::v1::TargetKind::WorkspaceExpense,
            "e1",
            "w1",
            "alice",
        )
        .await;
    let token = stack.token("alice", "w1", &["owner"], &[]);
    for (path, field) in [(V3.to_owned(), "image"), (workspace_route(), "file")] {
        // A 2 MiB field before the file (within the upload limit, so only the form's own
        // limit refuses it), and a 20 MiB one (refused by its declared length as well).
        for (size, statuses) in [(2 << 20, &[400][..]), (20 << 20, &[400, 413][..])] {
            let form = reqwest::multipart::Form::new()
                .part("note", reqwest::multipart::Part::bytes(vec![b'n'; size]))
                .part(
                    field,
                    reqwest::multipart::Part::bytes(jpeg(64, 48))
                        .file_name("r.jpg")
                        .mime_str("image/jpeg")
                        .unwrap(),
                );
            let sent = stack
                .http
                .post(stack.url(&path))
                .header("Authorization", format!("Bearer {token}"))
                .multipart(form)
                .send()
                .await;
            // Refused before it is read, a body the socket buffers cannot hold may meet a
            // closed connection before the client reads the answer (HTTP/1 has no way to stop
            // a sender but closing). The form's own limits are tested exactly, in process, by
            // the property test of `upload::form`; here: refused, and nothing stored.
            let response = match sent {
                Ok(response) => response,
                Err(error) if error.is_request() => continue,
                Err(error) => panic!("{path}, {size}: {error}"),
            };
            let status = response.status().as_u16();
            assert!(statuses.contains(&status), "{path}, {size}: {status}");
            if status == 400 {
                let body = response.text().await.unwrap();
                assert!(body.contains("before its file"), "{path}: {body}");
            }
        }
        // A part header that never ends.
        let start =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"\r\nX: ")
                .into_bytes();
        let response = form_request(
            &stack,
            &path,
            Some(&token),
            endless(start, vec![b'a'; 64 * 1024], Duration::from_millis(1), 4096),
        )
        .send()
        .await
        .unwrap();
        // Refused by size (400) or, the parser waiting for the header's end, by time (408).
        assert!(
            [400, 408].contains(&response.status().as_u16()),
            "{path}: {}",
            response.status()
        );
    }
    assert!(stack.objects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_preamble_is_refused_within_seconds() {
    let stack = spawn_stack().await;
    let token = stack.token("alice", "w1", &[], &[]);
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        form_request(
            &stack,
            V3,
            Some(&token),
            endless(
                b"--".to_vec(),
                b"-".to_vec(),
                Duration::from_millis(500),
                100,
            ),
        )
        .send(),
    )
    .await
    .expect("refused by the preamble's time limit")
    .unwrap();
    assert_eq!(response.status(), 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_streams_cannot_fill_the_gateways_only_connection_to_the_service() {
    // Two streams per connection: uploads held open by one client fill one connection, not
    // the pool, and other requests still get through.
    let stack = crate::helpers::spawn_stack_with(|settings| {
        settings.server.max_concurrent_streams = 2;
    })
    .await;
    let token = stack.token("mallory", "w1", &[], &[]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let request = stack
            .http
            .post(stack.url("/api/image/v1.0/receipt"))
            .header("Authorization", format!("OAuth {token}"))
            .header("Content-Type", "image/jpeg")
            .body(endless(
                vec![0xFF, 0xD8, 0xFF],
                vec![0xE0],
                Duration::from_millis(500),
                60,
            ));
        held.push(tokio::spawn(request.send()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice = stack.token("alice", "w1", &[], &[]);
    // The held uploads last 30 s (60 pieces, 500 ms apart): a request queued behind them would
    // wait that long; 15 s leaves room for a loaded machine.
    let listed = tokio::time::timeout(
        Duration::from_secs(15),
        stack.get("/api/v3.0/expense/receiptimages", &alice),
    )
    .await
    .expect("served beside the held uploads");
    assert_eq!(listed.status(), 200);
    for upload in held {
        upload.abort();
    }
}

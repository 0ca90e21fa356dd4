//! Every origin endpoint, exercised directly over loopback (no tunnel).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _, stream};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use warren_testkit::client::{self, BoxBody};
use warren_testkit::origin::Origin;
use warren_testkit::pattern::{pattern_body, pattern_body_chunked, pattern_sha256};

const HOST_NAME: &str = "foo.localhost";
const MIB: u64 = 1024 * 1024;

fn req(method: &str, path: &str, body: BoxBody) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, HOST_NAME)
        .body(body)
        .expect("request")
}

async fn json(body: Incoming) -> serde_json::Value {
    let bytes = body.collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

#[tokio::test]
async fn hello() {
    let origin = Origin::start().await.expect("origin");
    let (status, headers, body) = client::get(origin.addr, HOST_NAME, "/hello")
        .await
        .expect("get");
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert_eq!(body, "hello from origin");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404() {
    let origin = Origin::start().await.expect("origin");
    let (status, _, _) = client::get(origin.addr, HOST_NAME, "/nope")
        .await
        .expect("get");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = client::request(origin.addr, req("POST", "/hello", client::empty()))
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn echo_streams_each_chunk_back_before_the_request_ends() {
    let origin = Origin::start().await.expect("origin");
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let chunks = stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok(hyper::body::Frame::data(chunk)), rx))
    });
    let request = req(
        "PUT",
        "/echo?x=1&y=%20",
        BodyExt::boxed(StreamBody::new(chunks)),
    );
    let response = client::request(origin.addr, request).await.expect("echo");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-echo-method"], "PUT");
    assert_eq!(response.headers()["x-echo-uri"], "/echo?x=1&y=%20");
    assert_eq!(response.headers()[TRANSFER_ENCODING], "chunked");
    assert!(response.headers().get(CONTENT_LENGTH).is_none());

    let mut body = response.into_body();
    for i in 0..3 {
        let sent = Bytes::from(format!("chunk {i};"));
        tx.send(sent.clone()).await.expect("send chunk");
        let mut received = Vec::new();
        while received.len() < sent.len() {
            let frame = body
                .frame()
                .await
                .expect("frame before end")
                .expect("frame");
            received.extend_from_slice(frame.data_ref().expect("data"));
        }
        assert_eq!(received, sent);
    }
    drop(tx);
    assert!(
        body.frame().await.is_none(),
        "body ends when the request body ends"
    );
}

#[tokio::test]
async fn echo_carries_a_large_body_intact() {
    let origin = Origin::start().await.expect("origin");
    let len = 5 * MIB;
    let request = req("POST", "/echo", pattern_body(len).boxed());
    let response = client::request(origin.addr, request).await.expect("echo");
    let (count, sha) = client::body_sha256(response.into_body())
        .await
        .expect("read");
    assert_eq!(count, len);
    assert_eq!(sha, pattern_sha256(len));
}

#[tokio::test]
async fn headers_keep_case_order_and_repeats() {
    let origin = Origin::start().await.expect("origin");
    let raw = client::raw_exchange(
        origin.addr,
        b"GET /headers?q=1 HTTP/1.1\r\nHost: foo.localhost\r\nX-CamelCase: a\r\n\
          x-repeat: 1\r\nX-Other: z\r\nX-REPEAT: 2\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("exchange");
    let responses = split_responses(&raw);
    assert_eq!(responses.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&responses[0].1).expect("JSON");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["uri"], "/headers?q=1");
    assert_eq!(body["version"], "HTTP/1.1");
    assert_eq!(body["case_preserved"], true);
    assert_eq!(
        body["headers"],
        serde_json::json!([
            ["Host", "foo.localhost"],
            ["X-CamelCase", "a"],
            ["x-repeat", "1"],
            ["X-Other", "z"],
            ["X-REPEAT", "2"],
            ["Connection", "close"],
        ])
    );
}

#[tokio::test]
async fn headers_follow_each_request_on_a_kept_alive_connection() {
    let origin = Origin::start().await.expect("origin");
    // Pipelined in one write: the same request twice, differing only in name case, then an
    // upload whose body looks like a request head, then a third `/headers`. Each response must
    // describe its own request.
    let decoy = b"GET /headers HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n\r\n";
    let mut raw = b"GET /headers HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n".to_vec();
    raw.extend_from_slice(b"GET /headers HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n\r\n");
    let upload = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        decoy.len()
    );
    raw.extend_from_slice(upload.as_bytes());
    raw.extend_from_slice(decoy);
    raw.extend_from_slice(
        b"GET /headers HTTP/1.1\r\nHOST: x\r\nX-a: 1\r\nConnection: close\r\n\r\n",
    );
    let raw = client::raw_exchange(origin.addr, &raw)
        .await
        .expect("exchange");
    let responses = split_responses(&raw);
    assert_eq!(responses.len(), 4);
    let fields = |i: usize| {
        let body: serde_json::Value = serde_json::from_slice(&responses[i].1).expect("JSON");
        assert_eq!(body["case_preserved"], true, "response {i}");
        body["headers"].clone()
    };
    assert_eq!(fields(0), serde_json::json!([["Host", "x"], ["X-A", "1"]]));
    assert_eq!(fields(1), serde_json::json!([["host", "x"], ["x-a", "1"]]));
    assert_eq!(
        fields(3),
        serde_json::json!([["HOST", "x"], ["X-a", "1"], ["Connection", "close"]])
    );
    assert_eq!(origin.connections_accepted(), 1);
}

#[tokio::test]
async fn headers_from_hyper_client_keep_repeated_values_apart() {
    let origin = Origin::start().await.expect("origin");
    let mut request = req("GET", "/headers", client::empty());
    request
        .headers_mut()
        .append("x-repeat", "1".parse().expect("value"));
    request
        .headers_mut()
        .append("x-repeat", "2".parse().expect("value"));
    let response = client::request(origin.addr, request)
        .await
        .expect("headers");
    let body = json(response.into_body()).await;
    let repeats: Vec<_> = body["headers"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|field| field[0] == "x-repeat")
        .map(|field| field[1].clone())
        .collect();
    assert_eq!(repeats, ["1", "2"]);
}

#[tokio::test]
async fn bytes_with_content_length_match_the_pattern() {
    let origin = Origin::start().await.expect("origin");
    let len = 5 * MIB;
    let path = format!("/bytes/{len}");
    let response = client::request(origin.addr, req("GET", &path, client::empty()))
        .await
        .expect("bytes");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], len.to_string().as_str());
    let (count, sha) = client::body_sha256(response.into_body())
        .await
        .expect("read");
    assert_eq!((count, sha), (len, pattern_sha256(len)));
}

#[tokio::test]
async fn bytes_chunked_match_the_pattern() {
    let origin = Origin::start().await.expect("origin");
    let len = 3 * MIB + 17;
    let path = format!("/bytes/{len}?chunked=1");
    let response = client::request(origin.addr, req("GET", &path, client::empty()))
        .await
        .expect("bytes");
    assert!(response.headers().get(CONTENT_LENGTH).is_none());
    assert_eq!(response.headers()[TRANSFER_ENCODING], "chunked");
    let (count, sha) = client::body_sha256(response.into_body())
        .await
        .expect("read");
    assert_eq!((count, sha), (len, pattern_sha256(len)));
}

#[tokio::test]
async fn upload_reports_length_and_digest() {
    let origin = Origin::start().await.expect("origin");
    let len = 20 * MIB;
    let response = client::request(
        origin.addr,
        req("POST", "/upload", pattern_body(len).boxed()),
    )
    .await
    .expect("upload");
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response.into_body()).await;
    assert_eq!(body["bytes"], len);
    assert_eq!(body["sha256"], pattern_sha256(len));
}

#[tokio::test]
async fn chunked_put_upload_reports_length_and_digest() {
    let origin = Origin::start().await.expect("origin");
    let len = MIB + 3;
    let request = req("PUT", "/upload", pattern_body_chunked(len).boxed());
    let response = client::request(origin.addr, request).await.expect("upload");
    let body = json(response.into_body()).await;
    assert_eq!(body["bytes"], len);
    assert_eq!(body["sha256"], pattern_sha256(len));
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let origin = Origin::start().await.expect("origin");
    let request = req("GET", "/sse?count=3&interval_ms=200", client::empty());
    let response = client::request(origin.addr, request).await.expect("sse");
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");

    let mut body = response.into_body();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        text.push_str(std::str::from_utf8(frame.data_ref().expect("data")).expect("utf-8"));
        while arrivals.len() < text.matches("\n\n").count() {
            arrivals.push(Instant::now());
        }
    }
    assert_eq!(
        text,
        "id: 0\ndata: event 0\n\nid: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\n"
    );
    assert_eq!(arrivals.len(), 3);
    // Two intervals separate the first and last events; buffering would deliver them together.
    assert!(
        arrivals[2] - arrivals[0] >= Duration::from_millis(350),
        "{arrivals:?}"
    );
}

#[tokio::test]
async fn websocket_echoes_and_closes() {
    let origin = Origin::start().await.expect("origin");
    let mut socket = client::websocket(origin.addr, HOST_NAME, "/ws")
        .await
        .expect("handshake");
    socket
        .send(Message::text("hi there"))
        .await
        .expect("send text");
    assert_eq!(
        socket.next().await.expect("reply").expect("message"),
        Message::text("hi there")
    );
    let binary = Message::binary(vec![0u8, 1, 2, 255]);
    socket.send(binary.clone()).await.expect("send binary");
    assert_eq!(
        socket.next().await.expect("reply").expect("message"),
        binary
    );

    socket.close(None).await.expect("close");
    let reply = socket.next().await.expect("close reply").expect("message");
    assert!(matches!(reply, Message::Close(_)), "{reply:?}");
    assert!(socket.next().await.is_none());
}

#[tokio::test]
async fn ws_without_upgrade_is_rejected() {
    let origin = Origin::start().await.expect("origin");
    let (status, _, _) = client::get(origin.addr, HOST_NAME, "/ws")
        .await
        .expect("get");
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn slow_waits_before_answering() {
    let origin = Origin::start().await.expect("origin");
    let started = Instant::now();
    let (status, _, body) = client::get(origin.addr, HOST_NAME, "/slow?ms=200")
        .await
        .expect("get");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slow done");
}

#[tokio::test]
async fn status_echoes_the_code() {
    let origin = Origin::start().await.expect("origin");
    let (status, _, body) = client::get(origin.addr, HOST_NAME, "/status/418")
        .await
        .expect("get");
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    assert!(String::from_utf8_lossy(&body).contains("418"));
    let (status, _, body) = client::get(origin.addr, HOST_NAME, "/status/204")
        .await
        .expect("get");
    assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
    for bad in ["/status/99", "/status/600", "/status/abc"] {
        let (status, _, _) = client::get(origin.addr, HOST_NAME, bad).await.expect("get");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn stall_sends_the_bytes_then_nothing() {
    let origin = Origin::start().await.expect("origin");
    let len = 100_000;
    let path = format!("/stall?bytes={len}");
    let response = client::request(origin.addr, req("GET", &path, client::empty()))
        .await
        .expect("stall");
    let mut body = response.into_body();
    let mut received = 0u64;
    while received < len {
        let frame = body
            .frame()
            .await
            .expect("frame before end")
            .expect("frame");
        received += frame.data_ref().expect("data").len() as u64;
    }
    assert_eq!(received, len);
    let next = timeout(Duration::from_millis(300), body.frame()).await;
    assert!(next.is_err(), "the body should neither continue nor end");

    // Dropping the origin ends the stalled response.
    drop(origin);
    let end = timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("body ends");
    assert!(
        !matches!(end, Some(Ok(_))),
        "no more data after the origin stops"
    );
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let origin = Origin::start().await.expect("origin");
    let mut sender = client::connect(origin.addr).await.expect("connect");
    let requests = [
        req("GET", "/hello", client::empty()),
        req("GET", "/bytes/100000", client::empty()),
        req("POST", "/upload", pattern_body(200_000).boxed()),
        req("POST", "/echo", client::full("abc")),
        req("GET", "/headers", client::empty()),
    ];
    for request in requests {
        sender.ready().await.expect("ready");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.expect("body");
    }
    assert_eq!(origin.connections_accepted(), 1);
    client::get(origin.addr, HOST_NAME, "/hello")
        .await
        .expect("get");
    assert_eq!(origin.connections_accepted(), 2);
}

#[tokio::test]
async fn dropping_the_origin_stops_listening() {
    let origin = Origin::start().await.expect("origin");
    let addr = origin.addr;
    drop(origin);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "origin still accepting after drop"
        );
        tokio::task::yield_now().await;
    }
}

/// Splits HTTP/1.1 responses that carry `Content-Length` into (head, body) pairs.
fn split_responses(mut raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut responses = Vec::new();
    while !raw.is_empty() {
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete head")
            + 4;
        let head = String::from_utf8(raw[..head_end].to_vec()).expect("ASCII head");
        let len: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length");
        responses.push((head, raw[head_end..head_end + len].to_vec()));
        raw = &raw[head_end + len..];
    }
    responses
}

//! HTTP fidelity through a real edge, agent and origin: what the visitor sends is what the local
//! service gets (minus hop-by-hop headers, plus forwarding headers), and what it answers is what
//! the visitor gets — methods, targets, status codes, headers, framing, HTTP versions.

use anyhow::Context as _;
use http::header::CONTENT_LENGTH;
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt as _;
use warren_testkit::client;
use warren_testkit::cluster::{DEADLINE, TestAgent, TestEdge};
use warren_testkit::http::{
    Collected, RawConnection, ScriptedOrigin, Tunnel, h2_connect, header_fields, parse_all,
    sha256_hex, values_of,
};
use warren_testkit::pattern::{pattern_body, pattern_sha256};

const ERROR_HEADER: &str = "warren-error";

/// The fields the origin saw for a raw request sent through the tunnel.
async fn fields_at_origin(tunnel: &Tunnel, raw: &str) -> anyhow::Result<Vec<(String, String)>> {
    let exchange = client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?;
    let responses = parse_all(&exchange, &[false])?;
    anyhow::ensure!(responses.len() == 1, "one response expected: {responses:?}");
    anyhow::ensure!(responses[0].status == 200, "{responses:?}");
    let body: serde_json::Value = serde_json::from_slice(&responses[0].body)?;
    anyhow::ensure!(
        body["case_preserved"] == true,
        "origin lost the wire head: {body}"
    );
    Ok(header_fields(&body))
}

#[tokio::test]
async fn get_and_post_carry_bodies_both_ways() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("bodies").await?;
    let hello = tunnel.get("/hello").await?;
    assert_eq!(hello.status, StatusCode::OK);
    assert_eq!(hello.body, "hello from origin");
    assert!(hello.headers.get(ERROR_HEADER).is_none());

    let echo = tunnel
        .send(
            tunnel
                .request("POST", "/echo")
                .header("content-type", "text/plain")
                .body(client::full("posted body \u{1F980}"))?,
        )
        .await?;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.header("x-echo-method"), "POST");
    assert_eq!(echo.body, "posted body \u{1F980}");

    let len = 3 * 1024 * 1024 + 7;
    let upload = tunnel
        .send(
            tunnel
                .request("POST", "/upload")
                .body(pattern_body(len).boxed())?,
        )
        .await?
        .json()?;
    assert_eq!(upload["bytes"], len);
    assert_eq!(upload["sha256"], pattern_sha256(len));
    Ok(())
}

#[tokio::test]
async fn every_common_method_reaches_the_origin() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("methods").await?;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let body = format!("body of {method}");
        let response = tunnel
            .send(
                tunnel
                    .request(method, "/echo?m=1")
                    .body(client::full(body.clone()))?,
            )
            .await?;
        assert_eq!(response.status, StatusCode::OK, "{method}");
        assert_eq!(response.header("x-echo-method"), method);
        assert_eq!(response.header("x-echo-uri"), "/echo?m=1", "{method}");
        assert_eq!(response.body, body, "{method}");
    }
    // An extension method is a token like any other.
    let purge = tunnel
        .send(tunnel.request("PURGE", "/echo").body(client::empty())?)
        .await?;
    assert_eq!(purge.header("x-echo-method"), "PURGE");
    Ok(())
}

#[tokio::test]
async fn head_gets_the_headers_without_a_body() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("head").await?;
    // Straight from the origin, for comparison: HEAD /hello is not routed (404 with a length).
    let mut direct = RawConnection::connect(tunnel.origin.addr).await?;
    direct
        .send(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let expected = direct.response(true).await?;

    // Through the tunnel, on one connection: HEAD, HEAD on a chunked resource, then GET. If the
    // edge sent any body bytes after a HEAD response, the next response would not parse.
    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    let host = &tunnel.host;
    conn.send(format!("HEAD /hello HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let head = conn.response(true).await?;
    assert_eq!(head.status, 404);
    assert!(head.header(ERROR_HEADER).is_none(), "{head:?}");
    assert_eq!(
        head.header("content-length"),
        expected.header("content-length")
    );

    conn.send(format!("HEAD /echo HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let echo = conn.response(true).await?;
    assert_eq!(echo.status, 200);
    assert_eq!(echo.header("x-echo-method"), Some("HEAD"));

    conn.send(format!("GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let get = conn.response(false).await?;
    assert_eq!(
        (get.status, get.body.as_slice()),
        (200, &b"hello from origin"[..])
    );
    Ok(())
}

#[tokio::test]
async fn request_targets_pass_unchanged() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("targets").await?;
    let targets = [
        "/echo?a=1&b=%20x&c=%2F&empty=&flag&utf=%C3%A9&plus=a+b",
        "/echo?q=%22quoted%22&list=1,2,3&sq=[x]",
    ];
    for target in targets {
        let response = tunnel.get(target).await?;
        assert_eq!(response.header("x-echo-uri"), target);
    }
    // Unrouted paths come back in the origin's 404 body exactly as the origin parsed them.
    for path in [
        "/a%20b/%2Fc/../d;p=1",
        "/%E2%9C%93/~user/x.y",
        "/UPPER/lower/%7e",
        "/a//b",
    ] {
        let response = tunnel.get(&format!("{path}?x=1")).await?;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert!(response.headers.get(ERROR_HEADER).is_none(), "{path}");
        assert_eq!(
            response.body,
            format!("no origin endpoint at {path}"),
            "{path}"
        );
    }
    // An absolute-form target (as sent to proxies) reaches the origin in origin form.
    let raw = format!(
        "GET http://{host}/echo?abs=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        host = tunnel.host
    );
    let responses = parse_all(
        &client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?,
        &[false],
    )?;
    assert_eq!(responses[0].header("x-echo-uri"), Some("/echo?abs=1"));
    Ok(())
}

#[tokio::test]
async fn status_codes_pass_through() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("statuses").await?;
    for code in [
        200u16, 201, 202, 203, 206, 400, 401, 403, 404, 409, 410, 418, 429, 500, 502, 503, 504,
    ] {
        let response = tunnel.get(&format!("/status/{code}")).await?;
        assert_eq!(response.status.as_u16(), code);
        assert_eq!(
            response.body,
            format!("status {}", response.status),
            "{code}"
        );
        // Only failures the edge made itself carry the error header, even for 5xx.
        assert!(response.headers.get(ERROR_HEADER).is_none(), "{code}");
    }
    for code in [204u16, 205, 304] {
        let response = tunnel.get(&format!("/status/{code}")).await?;
        assert_eq!(response.status.as_u16(), code);
        assert!(response.body.is_empty(), "{code} must have no body");
        assert!(response.headers.get(ERROR_HEADER).is_none(), "{code}");
    }
    let missing = tunnel.get("/no/such/page").await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.headers.get(ERROR_HEADER).is_none());
    assert_eq!(missing.body, "no origin endpoint at /no/such/page");

    // On the wire: 204 and 304 carry no body and no chunked framing, and the connection stays
    // usable for the next request.
    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    for code in [204, 304, 201] {
        let raw = format!(
            "GET /status/{code} HTTP/1.1\r\nHost: {}\r\n\r\n",
            tunnel.host
        );
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert_eq!(response.status, code);
        if code != 201 {
            assert!(
                response.header("transfer-encoding").is_none(),
                "{response:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn request_headers_keep_case_order_and_repeats() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("casing").await?;
    let sent = [
        ("Host", tunnel.host.as_str()),
        ("X-CamelCase", "a"),
        ("x-lower", "b"),
        ("X-UPPER", "c"),
        ("X-Repeat", "1"),
        ("x-repeat", "2"),
        ("X-REPEAT", "3"),
        ("Accept", "application/json"),
        ("Cookie", "a=1; b=2"),
        ("Authorization", "Bearer t0ken"),
        ("X-Empty", ""),
        ("X-Spaces", "inner  spaces kept"),
    ];
    let mut raw = String::from("GET /headers?h=1 HTTP/1.1\r\n");
    for (name, value) in sent {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    let fields = fields_at_origin(&tunnel, &raw).await?;

    let originals: Vec<(String, String)> = fields
        .iter()
        .filter(|(name, _)| !name.to_ascii_lowercase().starts_with("x-forwarded-"))
        .filter(|(name, _)| {
            !["x-request-id", "x-real-ip", "forwarded"]
                .iter()
                .any(|added| name.eq_ignore_ascii_case(added))
        })
        .cloned()
        .collect();
    let expected: Vec<(String, String)> = sent
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(originals, expected, "all fields: {fields:?}");

    // Interleaved repeats: fields of one name keep their relative order (RFC 9110 §5.3).
    let raw = format!(
        "GET /headers HTTP/1.1\r\nHost: {}\r\nX-A: 1\r\nX-B: x\r\nX-A: 2\r\nX-B: y\r\nX-A: 3\r\n\
         Connection: close\r\n\r\n",
        tunnel.host
    );
    let fields = fields_at_origin(&tunnel, &raw).await?;
    assert_eq!(values_of(&fields, "x-a"), ["1", "2", "3"]);
    assert_eq!(values_of(&fields, "x-b"), ["x", "y"]);
    Ok(())
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("hops").await?;
    let raw = format!(
        "GET /headers HTTP/1.1\r\nHost: {}\r\nConnection: close, X-Drop-Me, x-also-listed\r\n\
         Connection: X-Second-List\r\nKeep-Alive: timeout=5, max=100\r\nTE: trailers\r\n\
         Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         Upgrade: h2c\r\nX-Drop-Me: secret\r\nX-Also-Listed: 1\r\nX-Second-List: 2\r\n\
         Transfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n0\r\n\r\n",
        tunnel.host
    );
    let fields = fields_at_origin(&tunnel, &raw).await?;
    for name in [
        "connection",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
        "x-drop-me",
        "x-also-listed",
        "x-second-list",
    ] {
        assert!(
            values_of(&fields, name).is_empty(),
            "{name} reached the origin: {fields:?}"
        );
    }
    // The visitor's framing is gone; the edge may frame the (empty) body itself, at most once.
    let te = values_of(&fields, "transfer-encoding");
    assert!(te.is_empty() || te == ["chunked"], "{fields:?}");
    assert_eq!(values_of(&fields, "x-kept"), ["yes"]);

    // A chunked request body is de-chunked once and re-framed once: the origin gets the bytes.
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
        tunnel.host
    );
    let responses = parse_all(
        &client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?,
        &[false],
    )?;
    assert_eq!(responses[0].body, b"hello, world");
    Ok(())
}

#[tokio::test]
async fn forwarding_headers_reach_the_origin() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("fwd").await?;
    let host = &tunnel.host;

    // No chain yet: the visitor's address starts one; an id is made up.
    let raw = format!("GET /headers HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let fields = fields_at_origin(&tunnel, &raw).await?;
    assert_eq!(values_of(&fields, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values_of(&fields, "x-forwarded-proto"), ["http"]);
    assert_eq!(values_of(&fields, "x-forwarded-host"), [host.as_str()]);
    assert_eq!(values_of(&fields, "host"), [host.as_str()]);
    let ids = values_of(&fields, "x-request-id");
    assert_eq!(ids.len(), 1, "{fields:?}");
    assert!(!ids[0].is_empty());
    let first_id = ids[0].to_string();

    // A second request gets a different id.
    let fields = fields_at_origin(&tunnel, &raw).await?;
    assert_ne!(values_of(&fields, "x-request-id"), [first_id.as_str()]);

    // A visitor's chain is replaced (it is not a trusted proxy: `--trusted-proxy`); the
    // visitor's own id is kept; proto and host are the edge's to say, not the visitor's.
    let raw = format!(
        "GET /headers HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 203.0.113.9, 198.51.100.2\r\n\
         X-Request-Id: visitor-id-42\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\
         Connection: close\r\n\r\n"
    );
    let fields = fields_at_origin(&tunnel, &raw).await?;
    assert_eq!(values_of(&fields, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values_of(&fields, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(
        values_of(&fields, "forwarded"),
        [format!("for=127.0.0.1;host={host};proto=http").as_str()]
    );
    assert_eq!(values_of(&fields, "x-request-id"), ["visitor-id-42"]);
    assert_eq!(values_of(&fields, "x-forwarded-proto"), ["http"]);
    assert_eq!(values_of(&fields, "x-forwarded-host"), [host.as_str()]);

    // The Host header is passed as sent, port included.
    let with_port = format!("{host}:{}", tunnel.addr().port());
    let raw = format!("GET /headers HTTP/1.1\r\nHost: {with_port}\r\nConnection: close\r\n\r\n");
    let fields = fields_at_origin(&tunnel, &raw).await?;
    assert_eq!(values_of(&fields, "host"), [with_port.as_str()]);
    Ok(())
}

#[tokio::test]
async fn response_headers_pass_back_intact() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = ScriptedOrigin::start(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1; Path=/; HttpOnly\r\n\
          Set-Cookie: b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT\r\nX-Custom: one\r\n\
          Set-Cookie: c=3\r\nX-Custom: two\r\nCache-Control: private, max-age=0\r\n\
          Keep-Alive: timeout=5\r\nConnection: X-Hop\r\nX-Hop: hidden\r\nETag: \"abc\"\r\n\
          Content-Length: 5\r\n\r\nhello"
            .to_vec()
    })
    .await?;
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("cookies")).await?;

    let mut conn = RawConnection::connect(edge.addr).await?;
    for _ in 0..2 {
        let raw = format!("GET /any HTTP/1.1\r\nHost: {}\r\n\r\n", agent.hostname);
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello");
        assert_eq!(
            response.values("set-cookie"),
            [
                "a=1; Path=/; HttpOnly",
                "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
                "c=3"
            ]
        );
        assert_eq!(response.values("x-custom"), ["one", "two"]);
        assert_eq!(response.header("cache-control"), Some("private, max-age=0"));
        assert_eq!(response.header("etag"), Some("\"abc\""));
        assert_eq!(response.header("content-length"), Some("5"));
        for hop in ["keep-alive", "x-hop"] {
            assert!(response.header(hop).is_none(), "{hop}: {response:?}");
        }
        assert!(response.header(ERROR_HEADER).is_none());
    }
    Ok(())
}

#[tokio::test]
async fn chunked_and_length_delimited_responses_keep_their_framing() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("framing").await?;
    let len = 300_000u64;
    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    for chunked in [false, true, false] {
        let query = if chunked { "?chunked=1" } else { "" };
        let raw = format!(
            "GET /bytes/{len}{query} HTTP/1.1\r\nHost: {}\r\n\r\n",
            tunnel.host
        );
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert_eq!(response.status, 200);
        assert_eq!(response.chunked, chunked, "{:?}", response.headers);
        let expected_length = (!chunked).then(|| len.to_string());
        assert_eq!(
            response.header("content-length"),
            expected_length.as_deref()
        );
        assert_eq!(response.body.len() as u64, len);
        assert_eq!(sha256_hex(&response.body), pattern_sha256(len));
    }
    Ok(())
}

#[tokio::test]
async fn http10_visitor_is_answered_in_http10() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("old").await?;
    let raw = format!("GET /hello HTTP/1.0\r\nHost: {}\r\n\r\n", tunnel.host);
    let exchange = client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?;
    let responses = parse_all(&exchange, &[false])?;
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].version, "HTTP/1.0");
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].body, b"hello from origin");

    // A chunked origin response cannot be sent chunked to an HTTP/1.0 visitor.
    let raw = format!(
        "GET /bytes/70000?chunked=1 HTTP/1.0\r\nHost: {}\r\n\r\n",
        tunnel.host
    );
    let exchange = client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?;
    let responses = parse_all(&exchange, &[false])?;
    assert_eq!(responses.len(), 1);
    assert!(!responses[0].chunked, "{:?}", responses[0].headers);
    assert_eq!(responses[0].body.len(), 70_000);
    assert_eq!(sha256_hex(&responses[0].body), pattern_sha256(70_000));

    // HTTP/1.0 with keep-alive asked for explicitly.
    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    for _ in 0..2 {
        let raw = format!(
            "GET /hello HTTP/1.0\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n",
            tunnel.host
        );
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"hello from origin"[..])
        );
    }
    Ok(())
}

#[tokio::test]
async fn http2_prior_knowledge_visitor_is_proxied() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("http2").await?;
    let mut sender = h2_connect(tunnel.addr()).await?;
    let url = |path: &str| format!("http://{}{path}", tunnel.host);

    let response = sender
        .send_request(Request::get(url("/hello")).body(client::empty())?)
        .await?;
    let hello = Collected::read(response).await?;
    assert_eq!(hello.version, Version::HTTP_2);
    assert_eq!(hello.status, StatusCode::OK);
    assert_eq!(hello.body, "hello from origin");

    let response = sender
        .send_request(Request::post(url("/echo?via=h2")).body(client::full("over http/2"))?)
        .await?;
    let echo = Collected::read(response).await?;
    assert_eq!(echo.header("x-echo-uri"), "/echo?via=h2");
    assert_eq!(echo.body, "over http/2");

    // The origin gets HTTP/1.1 with Host from :authority, and split cookies joined.
    let response = sender
        .send_request(
            Request::get(url("/headers"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("x-h2", "yes")
                .body(client::empty())?,
        )
        .await?;
    let seen = Collected::read(response).await?.json()?;
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["uri"], "/headers");
    let fields = header_fields(&seen);
    assert_eq!(values_of(&fields, "host"), [tunnel.host.as_str()]);
    assert_eq!(values_of(&fields, "cookie"), ["a=1; b=2"]);
    assert_eq!(values_of(&fields, "x-h2"), ["yes"]);

    // Status codes, empty bodies and origin 404s over HTTP/2.
    for (path, code) in [("/status/201", 201), ("/status/204", 204), ("/nope", 404)] {
        let response = sender
            .send_request(Request::get(url(path)).body(client::empty())?)
            .await?;
        let response = Collected::read(response).await?;
        assert_eq!(response.status.as_u16(), code, "{path}");
        assert!(response.headers.get(ERROR_HEADER).is_none(), "{path}");
    }

    // Many streams at once on the one connection.
    let len = 200_000u64;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut sender = sender.clone();
        let request = Request::get(url(&format!("/bytes/{len}"))).body(client::empty())?;
        tasks.push(tokio::spawn(async move {
            let response = sender.send_request(request).await?;
            client::body_sha256(response.into_body()).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await??, (len, pattern_sha256(len)));
    }

    // An unknown tunnel over HTTP/2 is the edge's own error.
    let response = sender
        .send_request(Request::get("http://nobody.localhost/").body(client::empty())?)
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()[ERROR_HEADER], "tunnel-not-found");
    Ok(())
}

#[tokio::test]
async fn expect_100_continue_upload() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("expect").await?;
    let len = 256 * 1024u64;
    let mut body = vec![0u8; len as usize];
    warren_testkit::pattern::fill_pattern(0, &mut body);

    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n",
        tunnel.host
    );
    conn.send(head.as_bytes()).await?;
    // The visitor waits for the interim response before sending the body.
    let interim = conn.response(false).await?;
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.send(&body).await?;
    let response = conn.response(false).await?;
    assert_eq!(response.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&response.body)?;
    assert_eq!(json["bytes"], len);
    assert_eq!(json["sha256"], pattern_sha256(len));

    // hyper's client, which sends the body without waiting, gets the same result.
    let response = tunnel
        .send(
            tunnel
                .request("PUT", "/upload")
                .header("expect", "100-continue")
                .body(pattern_body(len).boxed())?,
        )
        .await?;
    assert_eq!(response.json()?["sha256"], pattern_sha256(len));
    Ok(())
}

#[tokio::test]
async fn keep_alive_visitors_reuse_upstream_connections() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("reuse").await?;
    let mut sender = client::connect(tunnel.addr()).await?;
    for i in 0..20u64 {
        let request = match i % 4 {
            0 => tunnel.request("GET", "/hello").body(client::empty())?,
            1 => tunnel
                .request("POST", "/echo")
                .body(client::full(format!("request {i}")))?,
            2 => tunnel
                .request("GET", &format!("/bytes/{}", 1000 + i))
                .body(client::empty())?,
            _ => tunnel
                .request("POST", "/upload")
                .body(pattern_body(70_000).boxed())?,
        };
        sender.ready().await?;
        let response = Collected::read(sender.send_request(request).await?).await?;
        assert_eq!(response.status, StatusCode::OK, "request {i}");
        match i % 4 {
            0 => assert_eq!(response.body, "hello from origin"),
            1 => assert_eq!(response.body, format!("request {i}")),
            2 => assert_eq!(response.body.len() as u64, 1000 + i),
            _ => assert_eq!(response.json()?["sha256"], pattern_sha256(70_000)),
        }
    }
    let after_one_connection = tunnel.origin.connections_accepted();
    assert!(
        after_one_connection <= 2,
        "20 sequential requests opened {after_one_connection} origin connections"
    );

    // Sequential visitors on fresh connections share the pooled upstream connection too.
    for _ in 0..10 {
        assert_eq!(tunnel.get("/hello").await?.status, StatusCode::OK);
    }
    let total = tunnel.origin.connections_accepted();
    assert!(
        total <= after_one_connection + 1,
        "10 sequential visitors opened {} more origin connections",
        total - after_one_connection
    );
    Ok(())
}

#[tokio::test]
async fn pipelined_requests_get_in_order_responses() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("pipeline").await?;
    let host = &tunnel.host;
    let mut raw = String::new();
    raw.push_str(&format!("GET /echo?n=1 HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    raw.push_str(&format!("GET /bytes/5000 HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    raw.push_str(&format!(
        "POST /echo?n=3 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 11\r\n\r\nthird body!"
    ));
    raw.push_str(&format!("HEAD /echo?n=4 HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    raw.push_str(&format!(
        "GET /slow?ms=150 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    ));
    raw.push_str(&format!(
        "GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ));
    let exchange = client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?;
    let responses = parse_all(&exchange, &[false, false, false, true, false, false])?;
    assert_eq!(responses.len(), 6, "{responses:?}");
    assert_eq!(responses[0].header("x-echo-uri"), Some("/echo?n=1"));
    assert_eq!(responses[1].body.len(), 5000);
    assert_eq!(responses[2].header("x-echo-uri"), Some("/echo?n=3"));
    assert_eq!(responses[2].body, b"third body!");
    assert_eq!(responses[3].header("x-echo-uri"), Some("/echo?n=4"));
    assert_eq!(responses[4].body, b"slow done");
    assert_eq!(responses[5].body, b"hello from origin");
    assert!(responses.iter().all(|r| r.status == 200));
    Ok(())
}

#[tokio::test]
async fn large_request_heads_pass() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("bigheads").await?;
    // 40 KiB of headers: under the edge's 64 KiB limit, above typical 8 KiB buffers.
    let big = "v".repeat(8 * 1024);
    let mut request = tunnel.request("GET", "/headers");
    for i in 0..5 {
        request = request.header(format!("x-big-{i}"), big.as_str());
    }
    let seen = tunnel.send(request.body(client::empty())?).await?;
    assert_eq!(seen.status, StatusCode::OK);
    let fields = header_fields(&seen.json()?);
    for i in 0..5 {
        assert_eq!(values_of(&fields, &format!("x-big-{i}")), [big.as_str()]);
    }
    assert!(seen.headers.get(CONTENT_LENGTH).is_some());

    // A 30 KiB request target.
    let query = format!("/echo?long={}", "q".repeat(30 * 1024));
    let echo = tunnel.get(&query).await?;
    assert_eq!(echo.status, StatusCode::OK);
    assert_eq!(echo.header("x-echo-uri"), query);
    Ok(())
}

#[tokio::test]
async fn origin_closing_after_each_response_is_not_reused() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = ScriptedOrigin::start(|seen| {
        let body = format!("answer to {}", seen.target);
        format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await?;
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("closer")).await?;
    // One visitor connection, many requests: each needs a fresh upstream connection, and none
    // may fail because a closed one was reused.
    let mut conn = RawConnection::connect(edge.addr).await?;
    for i in 0..10 {
        let raw = format!("GET /n/{i} HTTP/1.1\r\nHost: {}\r\n\r\n", agent.hostname);
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert_eq!(response.body, format!("answer to /n/{i}").as_bytes());
        // The origin's `Connection: close` is about its own connection, not the visitor's.
        assert!(
            response
                .header("connection")
                .is_none_or(|v| !v.contains("close"))
        );
    }
    assert_eq!(origin.connections_accepted(), 10);
    Ok(())
}

#[tokio::test]
async fn idle_upstream_connections_closed_by_the_origin_are_not_reused() -> anyhow::Result<()> {
    // A keep-alive origin that closes each connection shortly after answering, without saying
    // so (as servers with a short idle timeout do). The edge's pooled connection is idle and
    // not polled when the close arrives: the next request must notice and open a new one.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    warren_testkit::cluster::init_logging();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let origin = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buf[..read]),
                    }
                }
                let body = format!("connection {n}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                // Dropped: closed while idle.
            });
        }
    });
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, port, Some("idleclose")).await?;
    for i in 0..5 {
        let mut conn = RawConnection::connect(edge.addr).await?;
        let raw = format!("GET /n/{i} HTTP/1.1\r\nHost: {}\r\n\r\n", agent.hostname);
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        assert_eq!(response.status, 200, "request {i}: {response:?}");
        assert_eq!(response.body, format!("connection {i}").as_bytes());
        // Long enough for the close to reach the edge and sit there, unnoticed until checkout.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    origin.abort();
    Ok(())
}

#[tokio::test]
async fn early_response_to_a_large_upload_reaches_the_visitor() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("early").await?;
    // POST /hello is not routed: the origin answers 404 without reading the 4 MiB body, then
    // closes with it unread, which resets the connection right behind its answer. Whether the
    // answer survives depends on timing, hence several rounds.
    for round in 0..5 {
        let response = tokio::time::timeout(
            DEADLINE,
            tunnel.send(
                tunnel
                    .request("POST", "/hello")
                    .body(pattern_body(4 * 1024 * 1024).boxed())?,
            ),
        )
        .await
        .context("no answer to an upload the origin refused")??;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "round {round}: {response:?}"
        );
        assert!(response.headers.get(ERROR_HEADER).is_none());
    }
    // The tunnel is still fine afterwards.
    assert_eq!(tunnel.get("/hello").await?.body, "hello from origin");
    Ok(())
}

#[tokio::test]
async fn conflicting_framing_cannot_smuggle_a_request() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("smuggle").await?;
    // Content-Length and Transfer-Encoding together: chunked framing wins (RFC 9112 §6.3), and
    // the origin must see one consistent framing. If the edge forwarded `Content-Length: 4`
    // with the chunked body, the origin would take "GET " of the next bytes as a new request.
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         20\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n\r\n0\r\n\r\n\
         GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        host = tunnel.host
    );
    let exchange = client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?;
    let responses = parse_all(&exchange, &[false, false])?;
    // The edge may answer the second request or close after the ambiguous one; either way no
    // response may come from a smuggled request.
    assert!(!responses.is_empty());
    if responses[0].status == 200 {
        assert_eq!(responses[0].body, b"GET /smuggled HTTP/1.1\r\nX: y\r\n\r\n");
    } else {
        assert_eq!(responses[0].status, 400, "{responses:?}");
    }
    for response in &responses[1..] {
        assert_eq!(response.body, b"hello from origin", "{responses:?}");
    }
    // The origin never saw a request for /smuggled: its next answer is for what we ask.
    assert_eq!(tunnel.get("/hello").await?.body, "hello from origin");
    Ok(())
}

#[tokio::test]
async fn http2_visitor_streams_large_bodies_both_ways() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("http2-big").await?;
    let mut sender = h2_connect(tunnel.addr()).await?;
    let len = 6 * 1024 * 1024 + 3;
    let upload =
        Request::post(format!("http://{}/upload", tunnel.host)).body(pattern_body(len).boxed())?;
    let response = sender.send_request(upload).await?;
    let json = Collected::read(response).await?.json()?;
    assert_eq!(json["bytes"], len);
    assert_eq!(json["sha256"], pattern_sha256(len));

    let download = Request::get(format!("http://{}/bytes/{len}?chunked=1", tunnel.host))
        .body(client::empty())?;
    let response = sender.send_request(download).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        client::body_sha256(response.into_body()).await?,
        (len, pattern_sha256(len))
    );
    Ok(())
}

#[tokio::test]
async fn close_delimited_origin_responses_arrive_whole() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let body = "x".repeat(100_000);
    let script_body = body.clone();
    // No length, no chunking: the body ends when the origin closes the connection, as
    // HTTP/1.0 servers do.
    let origin = ScriptedOrigin::start(move |seen| {
        let version = if seen.target == "/old" {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        format!(
            "{version} 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{script_body}"
        )
        .into_bytes()
    })
    .await?;
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("closing")).await?;
    let mut conn = RawConnection::connect(edge.addr).await?;
    for path in ["/old", "/new", "/old"] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", agent.hostname);
        conn.send(raw.as_bytes()).await?;
        let response = conn.response(false).await?;
        // The visitor's connection stays HTTP/1.1 and reusable: the body must be framed.
        assert_eq!(response.version, "HTTP/1.1", "{path}");
        assert_eq!(response.status, 200, "{path}");
        assert!(response.chunked, "{path}: {:?}", response.headers);
        assert_eq!(response.body, body.as_bytes(), "{path}");
    }
    Ok(())
}

/// A close-delimited body written in many small pieces reaches the edge many per read; the edge
/// writes what has arrived together, each piece re-encoded as its own chunk, in order.
#[tokio::test]
async fn close_delimited_body_in_small_pieces_arrives_whole_and_in_order() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    const PIECES: usize = 3000;
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    let origin = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = socket.set_nodelay(true);
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
                if socket.write_all(head).await.is_err() {
                    return;
                }
                // One write per piece: the agent reads several at once, the edge more.
                for i in 0..PIECES {
                    if socket
                        .write_all(format!("piece {i}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, port, Some("pieces")).await?;
    let expected: String = (0..PIECES).map(|i| format!("piece {i}\n")).collect();
    let mut conn = RawConnection::connect(edge.addr).await?;
    for round in 0..3 {
        let raw = format!("GET /p HTTP/1.1\r\nHost: {}\r\n\r\n", agent.hostname);
        conn.send(raw.as_bytes()).await?;
        // Parsed strictly: every chunk line and CRLF in place, then the last chunk.
        let response = conn.response(false).await?;
        assert_eq!(response.status, 200, "round {round}");
        assert!(response.chunked, "round {round}: {:?}", response.headers);
        assert_eq!(
            String::from_utf8(response.body)?,
            expected,
            "round {round}: the body differs"
        );
    }
    origin.abort();
    Ok(())
}

#[tokio::test]
async fn websocket_refused_by_the_origin_is_its_answer() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("noupgrade").await?;
    let mut conn = RawConnection::connect(tunnel.addr()).await?;
    let upgrade = format!(
        "GET /hello HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        tunnel.host
    );
    conn.send(upgrade.as_bytes()).await?;
    // GET /hello answers 200 whatever the upgrade headers say: no switch happens.
    let response = conn.response(false).await?;
    assert_eq!(response.status, 200);
    assert!(response.header(ERROR_HEADER).is_none());
    assert_eq!(response.body, b"hello from origin");
    // /ws refuses a plain GET; the origin's 400 is passed on as is.
    conn.send(format!("GET /ws HTTP/1.1\r\nHost: {}\r\n\r\n", tunnel.host).as_bytes())
        .await?;
    let response = conn.response(false).await?;
    assert_eq!(response.status, 400);
    assert!(response.header(ERROR_HEADER).is_none());
    Ok(())
}

#[tokio::test]
async fn absolute_form_target_names_the_tunnel() -> anyhow::Result<()> {
    let tunnel = Tunnel::start("absolute").await?;
    // RFC 9112 §3.2.2: the authority of an absolute-form target overrides Host, so the edge
    // and the origin agree on which site was asked for.
    let raw = format!(
        "GET http://{}/headers HTTP/1.1\r\nHost: nobody.localhost\r\nConnection: close\r\n\r\n",
        tunnel.host
    );
    let fields = fields_at_origin(&tunnel, &raw).await?;
    assert_eq!(values_of(&fields, "host"), [tunnel.host.as_str()]);
    assert_eq!(
        values_of(&fields, "x-forwarded-host"),
        [tunnel.host.as_str()]
    );

    let raw = format!(
        "GET http://nobody.localhost/hello HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        tunnel.host
    );
    let responses = parse_all(
        &client::raw_exchange(tunnel.addr(), raw.as_bytes()).await?,
        &[false],
    )?;
    assert_eq!(responses[0].status, 404);
    assert_eq!(responses[0].header(ERROR_HEADER), Some("tunnel-not-found"));
    Ok(())
}

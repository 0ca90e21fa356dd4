//! Agent sessions under stress, end to end: bad handshakes, malformed frames, silent agents,
//! killed agents, restarted and draining edges, takeovers and abuse of the tunnel endpoint.
//!
//! Misbehaving agents are played by [`RawAgent`], a WebSocket client that sends hand-made frames.
//! A witness agent with a real tunnel on the same edge must keep serving throughout: one broken
//! session must never affect another.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use warren_cli::agent::{AgentError, AgentEvent};
use warren_edge::EdgeConfig;
use warren_proto::control::{
    ControlMessage, Credential, Event, Hello, Join, LaneKey, Reject, RejectCode, TunnelProtocol,
    TunnelRequest, Welcome,
};
use warren_proto::error::{GoAwayCode, ResetCode};
use warren_proto::frame::{HEADER_LEN, MAX_MESSAGE, MAX_PAYLOAD};
use warren_proto::request_logs;
use warren_proto::{Frame, PROTOCOL_VERSION, Settings, StreamId, TunnelId};
use warren_testkit::client::{self, ClientWebSocket};
use warren_testkit::cluster::{DEADLINE, TEST_TOKEN, TestAgent, TestEdge, agent_options};
use warren_testkit::origin::Origin;

const TUNNEL_PATH: &str = "/_warren/tunnel";

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_handshakes_are_rejected_and_closed_while_other_tunnels_serve() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let handshake_timeout = Duration::from_millis(500);
    let edge = TestEdge::start_with(warren_edge::EdgeConfig {
        handshake_timeout,
        ..TestEdge::config()
    })
    .await?;
    let witness = Witness::start(&edge).await?;

    let cases: Vec<(&str, Message, RejectCode, &[&str])> = vec![
        (
            "a text message",
            Message::text("HELLO"),
            RejectCode::BadRequest,
            &["binary", "text"],
        ),
        (
            "a PING instead of HELLO",
            binary(&[Frame::Ping { nonce: 7 }]),
            RejectCode::BadRequest,
            &["expected HELLO", "PING"],
        ),
        (
            "HELLO and another frame in one message",
            binary(&[
                hello(TEST_TOKEN, None).into_frame(),
                Frame::Ping { nonce: 1 },
            ]),
            RejectCode::BadRequest,
            &["one frame"],
        ),
        (
            "HELLO with invalid JSON",
            binary(&[Frame::Hello {
                version: PROTOCOL_VERSION,
                body: Bytes::from_static(b"{\"agent_version\": oops"),
            }]),
            RejectCode::BadRequest,
            &["HELLO"],
        ),
        (
            "HELLO with protocol version 99",
            binary(&[Frame::Hello {
                version: 99,
                body: hello(TEST_TOKEN, None).to_json(),
            }]),
            RejectCode::UnsupportedVersion,
            &["99", "edge must be upgraded"],
        ),
        (
            "HELLO with protocol version 0",
            binary(&[Frame::Hello {
                version: 0,
                body: hello(TEST_TOKEN, None).to_json(),
            }]),
            RejectCode::UnsupportedVersion,
            &["upgrade the warren CLI"],
        ),
        (
            "a wrong token",
            binary(&[hello("wrn_wrong", None).into_frame()]),
            RejectCode::Unauthorized,
            &["token"],
        ),
        (
            "an invalid subdomain",
            binary(&[hello(TEST_TOKEN, Some("bad_name")).into_frame()]),
            RejectCode::SubdomainInvalid,
            &["bad_name"],
        ),
        (
            "a reserved subdomain",
            binary(&[hello(TEST_TOKEN, Some("www")).into_frame()]),
            RejectCode::SubdomainInvalid,
            &["reserved"],
        ),
    ];
    for (what, message, code, needles) in cases {
        let mut raw = RawAgent::connect(&edge).await?;
        raw.ws.send(message).await.context(what)?;
        let reject = raw.expect_reject().await.context(what)?;
        assert_eq!(reject.code, code, "{what}: {reject:?}");
        for needle in needles {
            assert!(
                reject.message.contains(needle),
                "{what}: the REJECT message should mention {needle:?}: {:?}",
                reject.message
            );
        }
        witness.assert_serves(&edge).await.context(what)?;
    }

    // A client that never says anything is dropped once the handshake timeout passes, and
    // costs the witness nothing in the meantime.
    let mut silent = RawAgent::connect(&edge).await?;
    let connected = Instant::now();
    witness.assert_serves(&edge).await?;
    silent.expect_closed().await?;
    let waited = connected.elapsed();
    assert!(
        waited >= handshake_timeout.mul_f32(0.8) && waited < handshake_timeout * 8,
        "a silent client was dropped after {waited:?}; the handshake timeout is {handshake_timeout:?}"
    );
    witness.assert_serves(&edge).await?;
    witness.stop().await;
    edge.stop().await
}

#[tokio::test]
async fn a_plain_get_on_the_tunnel_endpoint_is_a_clear_400() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let (status, headers, body) = client::get(edge.addr, "localhost", TUNNEL_PATH).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["warren-error"], "bad-request");
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let message = json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("WebSocket") && message.contains("warren CLI"),
        "the 400 should say the endpoint speaks WebSocket only: {json}"
    );

    // Upgrades that are not valid WebSocket handshakes are refused with the reason too.
    let missing_key = "GET /_warren/tunnel HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n";
    let old_version = "GET /_warren/tunnel HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: close\r\n\r\n";
    for (request, needle) in [
        (missing_key, "Sec-WebSocket-Key"),
        (old_version, "version 13"),
    ] {
        let response = tokio::time::timeout(
            DEADLINE,
            client::raw_exchange(edge.addr, request.as_bytes()),
        )
        .await
        .context("the edge kept a refused upgrade open")??;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "expected 400 for {needle}: {response}"
        );
        assert!(response.contains(needle), "{response}");
    }
    edge.stop().await
}

// ---------------------------------------------------------------------------------------------
// Malformed frames after the handshake
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_frames_end_only_the_offending_session() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let witness = Witness::start(&edge).await?;

    let full_window = Settings::default().stream_window as usize;
    let cases: Vec<(&str, Message, GoAwayCode, &str)> = vec![
        (
            "an unknown frame kind",
            Message::Binary(raw_header(0, 0x7f, 0)),
            GoAwayCode::Protocol,
            "unknown frame kind 0x7f",
        ),
        (
            "an oversized length field",
            Message::Binary(raw_header(MAX_PAYLOAD as u32 + 1, 0x00, 2)),
            GoAwayCode::Protocol,
            "exceeds the limit",
        ),
        (
            "a message ending inside a frame",
            Message::Binary(concat(&[
                Frame::Ping { nonce: 1 }.to_bytes(),
                Frame::Ping { nonce: 2 }.to_bytes().slice(..HEADER_LEN + 3),
            ])),
            GoAwayCode::Protocol,
            "middle of a frame",
        ),
        (
            "DATA on a stream nobody opened",
            Message::Binary(data(4, 10)),
            GoAwayCode::Protocol,
            "never opened",
        ),
        (
            "OPEN with the edge's (odd) parity",
            binary(&[Frame::Open {
                stream: StreamId(3),
                tunnel: TunnelId(0),
            }]),
            GoAwayCode::Protocol,
            "wrong parity",
        ),
        (
            "a WINDOW that overflows the send window",
            binary(&[Frame::Window {
                stream: StreamId::SESSION,
                increment: u32::MAX,
            }]),
            GoAwayCode::FlowControl,
            "overflows",
        ),
        (
            "DATA beyond the stream's window",
            Message::Binary(concat(&[
                Frame::Open {
                    stream: StreamId(2),
                    tunnel: TunnelId(0),
                }
                .to_bytes(),
                data(2, full_window),
                data(2, 1),
            ])),
            GoAwayCode::FlowControl,
            "beyond its flow-control window",
        ),
        (
            "a text message",
            Message::text("hello?"),
            GoAwayCode::Protocol,
            "text message",
        ),
    ];
    for (i, (what, message, code, needle)) in cases.into_iter().enumerate() {
        let subdomain = format!("raw{i}");
        let (mut raw, welcome) = RawAgent::welcomed(&edge, &subdomain).await.context(what)?;
        let hostname = welcome.tunnels[0].hostname.clone();
        raw.ws.send(message).await.context(what)?;
        let (got, message) = raw.expect_goaway().await.context(what)?;
        assert_eq!(got, code, "{what}: GOAWAY {got:?} {message:?}");
        assert!(
            message.contains(needle),
            "{what}: the GOAWAY message should say {needle:?}: {message:?}"
        );
        raw.expect_closed().await.context(what)?;
        wait_until_gone(&edge, &hostname).await.context(what)?;
        witness.assert_serves(&edge).await.context(what)?;
    }

    // A WebSocket message over the protocol's cap is refused before it is buffered.
    let (mut raw, welcome) = RawAgent::welcomed(&edge, "rawbig").await?;
    let big = Bytes::from(vec![0u8; MAX_MESSAGE + 1]);
    // The edge may close while the message is still being written; that is the point.
    let _ = raw.ws.send(Message::Binary(big)).await;
    raw.expect_closed_after_optional_goaway().await?;
    wait_until_gone(&edge, &welcome.tunnels[0].hostname).await?;
    witness.assert_serves(&edge).await?;

    witness.stop().await;
    edge.stop().await
}

// ---------------------------------------------------------------------------------------------
// Heartbeats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_agent_that_never_answers_pings_is_dropped_and_its_name_freed() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let config = TestEdge::config();
    let interval = config.heartbeat_interval;
    let edge = TestEdge::start_with(config).await?;
    let (mut raw, welcome) = RawAgent::welcomed(&edge, "mute").await?;
    let welcomed = Instant::now();
    assert_eq!(welcome.heartbeat_interval_ms, interval.as_millis() as u64);

    let (code, message) = raw.expect_goaway().await?;
    let dropped_after = welcomed.elapsed();
    assert_eq!(code, GoAwayCode::Timeout, "{message}");
    assert!(message.contains("heartbeat"), "{message}");
    assert!(
        raw.pings >= 1,
        "the edge should have pinged before giving up"
    );
    assert!(
        dropped_after >= interval * 2 && dropped_after <= interval * 6,
        "dropped after {dropped_after:?}; expected about 3 heartbeat intervals of {interval:?}"
    );
    raw.expect_closed().await?;

    let hostname = welcome.tunnels[0].hostname.clone();
    wait_until_gone(&edge, &hostname).await?;
    let origin = Origin::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("mute")).await?;
    assert_eq!(agent.hostname, hostname);
    assert_serves(&edge, &agent.hostname).await?;
    agent.stop().await;
    edge.stop().await
}

/// An agent that asks for compact request logs gets them in the binary form (first byte
/// 0x01, not JSON), and a request it refused is logged with the answer the visitor got.
#[tokio::test]
async fn agents_that_ask_get_request_logs_in_the_compact_form() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let mut raw = RawAgent::connect(&edge).await?;
    let mut hello = hello(TEST_TOKEN, Some("compact"));
    hello.request_log = true;
    hello.request_log_batches = true;
    hello.request_log_compact = true;
    raw.ws.send(binary(&[hello.into_frame()])).await?;
    let hostname = match raw.next_frames().await?.as_deref() {
        Some([Frame::Welcome { body }]) => Welcome::from_json(body)?.tunnels[0].hostname.clone(),
        other => bail!("expected WELCOME, got {other:?}"),
    };

    let addr = edge.addr;
    let visit = tokio::spawn(async move { client::get(addr, &hostname, "/logged?x=1").await });
    let body = loop {
        let frames = raw.next_frames().await?.context("the edge closed")?;
        let mut event = None;
        for frame in frames {
            match frame {
                Frame::Open { stream, .. } => {
                    let reset = Frame::Rst {
                        stream,
                        code: ResetCode::LocalRefused,
                    };
                    raw.ws.send(binary(&[reset])).await?;
                }
                Frame::Event { body } => event = Some(body),
                _ => {}
            }
        }
        if let Some(body) = event {
            break body;
        }
    };
    let (status, _, _) = visit.await??;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body.first(), Some(&request_logs::COMPACT_REQUEST_LOGS));
    let Event::RequestLogs { entries } = request_logs::decode(&body)? else {
        bail!("not request logs");
    };
    let [log] = entries.as_slice() else {
        bail!("expected one log, got {entries:?}");
    };
    assert_eq!(
        (log.method.as_str(), log.path.as_str(), log.status),
        ("GET", "/logged?x=1", 502)
    );
    assert_eq!(log.error.as_deref(), Some("local-service-refused"));
    edge.stop().await
}

// ---------------------------------------------------------------------------------------------
// Agents and edges that go away
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_killed_agent_gets_the_same_url_back_when_restarted() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = Origin::start().await?;
    let edge = TestEdge::start().await?;
    // With a chosen name, and with the default one: both must survive a restart.
    for subdomain in [Some("phoenix"), None] {
        let options = agent_options(&edge, origin.port(), subdomain);
        let agent = TestAgent::start_with(options.clone()).await?;
        let (public_url, hostname) = (agent.public_url.clone(), agent.hostname.clone());
        assert_serves(&edge, &hostname).await?;

        agent.kill();
        // The gap: a visitor arriving now is held until the agent is back, not failed.
        let held = held_request(&edge, &hostname).await?;

        let agent = TestAgent::start_with(options).await?;
        assert_eq!(agent.public_url, public_url, "subdomain {subdomain:?}");
        let (status, _, body) = tokio::time::timeout(DEADLINE, held).await???;
        assert_eq!(status, StatusCode::OK, "the held request is delivered");
        assert_eq!(body, "hello from origin");
        assert_serves(&edge, &hostname).await?;
        agent.stop().await;
    }
    edge.stop().await
}

#[tokio::test]
async fn an_agent_that_never_returns_fails_held_requests_then_its_url_is_unknown()
-> anyhow::Result<()> {
    let origin = Origin::start().await?;
    let edge = TestEdge::start_with(EdgeConfig {
        hold_timeout: Duration::from_millis(800),
        ..TestEdge::config()
    })
    .await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("gone")).await?;
    let hostname = agent.hostname.clone();
    assert_serves(&edge, &hostname).await?;
    agent.kill();
    let held = held_request(&edge, &hostname).await?;
    let (status, headers, _) = tokio::time::timeout(DEADLINE, held).await???;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "held, then failed");
    assert_eq!(headers["warren-error"], "agent-unreachable");
    // After the hold window the tunnel is simply unknown.
    wait_until_gone(&edge, &hostname).await?;
    edge.stop().await
}

#[tokio::test]
async fn an_agent_that_leaves_on_purpose_is_not_waited_for() -> anyhow::Result<()> {
    let origin = Origin::start().await?;
    // A hold window far longer than the bound below, so that "not held" and "held" stay apart
    // on a loaded machine (with the test edge's 3 s window the two met at the boundary).
    let hold = Duration::from_secs(60);
    let edge = TestEdge::start_with(EdgeConfig {
        hold_timeout: hold,
        ..TestEdge::config()
    })
    .await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("bye")).await?;
    let hostname = agent.hostname.clone();
    assert_serves(&edge, &hostname).await?;
    agent.stop().await;
    let started = Instant::now();
    wait_until_gone(&edge, &hostname).await?;
    assert!(
        started.elapsed() < hold / 6,
        "a tunnel closed on purpose answers 404 at once, it is not held ({:?})",
        started.elapsed()
    );
    edge.stop().await
}

#[tokio::test]
async fn the_agent_reconnects_to_an_edge_restarted_on_the_same_port() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = Origin::start().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let edge = TestEdge::start_on(TestEdge::config(), listener).await?;
    let mut agent = TestAgent::start(&edge, origin.port(), Some("comeback")).await?;
    let public_url = agent.public_url.clone();
    assert_serves(&edge, &agent.hostname).await?;

    edge.stop().await?;
    agent
        .wait_for(|e| matches!(e, AgentEvent::Reconnecting { .. }))
        .await?;

    let listener = bind_again(addr).await?;
    let edge = TestEdge::start_on(TestEdge::config(), listener).await?;
    let ready = agent
        .wait_for(|e| matches!(e, AgentEvent::TunnelReady { .. }))
        .await?;
    let AgentEvent::TunnelReady {
        public_url: again, ..
    } = ready
    else {
        unreachable!("wait_for returned a non-matching event");
    };
    assert_eq!(again, public_url);
    assert_serves(&edge, &agent.hostname).await?;
    agent.stop().await;
    edge.stop().await
}

#[tokio::test]
async fn edge_shutdown_lets_an_in_flight_request_finish() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = Origin::start().await?;
    let edge = TestEdge::start().await?;
    let mut agent = TestAgent::start(&edge, origin.port(), Some("drain")).await?;
    let (addr, hostname) = (edge.addr, agent.hostname.clone());
    let slow = tokio::spawn(async move { client::get(addr, &hostname, "/slow?ms=1500").await });
    // The origin accepting the agent's connection means the request is inside the tunnel.
    let origin_ref = &origin;
    poll_until(|| async move { Ok(origin_ref.connections_accepted() >= 1) }).await?;

    edge.begin_shutdown();
    let notice = agent
        .wait_for(|e| matches!(e, AgentEvent::Notice { .. }))
        .await?;
    let AgentEvent::Notice { message } = notice else {
        unreachable!("wait_for returned a non-matching event");
    };
    assert!(
        message.contains("edge shutting down"),
        "the agent should report the edge's GOAWAY: {message}"
    );

    let (status, _, body) = tokio::time::timeout(DEADLINE, slow)
        .await
        .context("the in-flight request never finished")???;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"slow done");
    tokio::time::timeout(DEADLINE, edge.finished())
        .await
        .context("the edge never finished draining")??;
    // The edge is gone for good, so the agent keeps trying.
    agent
        .wait_for(|e| matches!(e, AgentEvent::Reconnecting { .. }))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_second_agent_for_the_same_name_takes_over() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let (first_origin, second_origin) = (Origin::start().await?, Origin::start().await?);
    let edge = TestEdge::start().await?;
    let mut first = TestAgent::start(&edge, first_origin.port(), Some("twin")).await?;
    assert_serves(&edge, &first.hostname).await?;
    assert_eq!(first_origin.connections_accepted(), 1);

    let second = TestAgent::start(&edge, second_origin.port(), Some("twin")).await?;
    assert_eq!(second.public_url, first.public_url);
    match first.result().await {
        Some(Err(AgentError::Closed(message))) => assert!(
            message.contains("taken over"),
            "the first agent should say it was taken over: {message}"
        ),
        other => bail!("the first agent should end with AgentError::Closed, not {other:?}"),
    }
    // Served by the second agent now, also after the first session is completely gone.
    assert_serves(&edge, &second.hostname).await?;
    assert_eq!(second_origin.connections_accepted(), 1);
    assert_eq!(first_origin.connections_accepted(), 1);
    second.stop().await;
    edge.stop().await
}

// ---------------------------------------------------------------------------------------------
// Lanes: more sessions of one agent joined to its first (`warren http --sessions N`)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn new_streams_take_the_session_and_its_lane_in_turn() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let (mut first, welcome) = RawAgent::welcomed(&edge, "laned").await?;
    let (mut lane, lane_welcome) = RawAgent::joined(&edge, &welcome).await?;
    assert_ne!(lane_welcome.session_id, welcome.session_id);
    assert_eq!(
        lane_welcome.tunnels, welcome.tunnels,
        "a lane carries the same tunnels"
    );
    assert!(lane_welcome.lane_key.is_none(), "lanes do not take lanes");

    let hostname = welcome.tunnels[0].hostname.clone();
    let (mut on_first, mut on_lane) = (0, 0);
    for _ in 0..6 {
        let addr = edge.addr;
        let host = hostname.clone();
        let visit = tokio::spawn(async move { client::get(addr, &host, "/turn").await });
        // Whichever connection the edge opened the stream on refuses it: the visitor gets 502.
        let opened_on_lane = loop {
            let (frames, on_lane) = tokio::select! {
                frames = first.next_frames() => (frames?, false),
                frames = lane.next_frames() => (frames?, true),
            };
            let frames = frames.context("the edge closed a connection")?;
            let Some(stream) = frames.iter().find_map(|f| match f {
                Frame::Open { stream, .. } => Some(*stream),
                _ => None,
            }) else {
                continue;
            };
            let reset = binary(&[Frame::Rst {
                stream,
                code: ResetCode::LocalRefused,
            }]);
            if on_lane {
                lane.ws.send(reset).await?;
            } else {
                first.ws.send(reset).await?;
            }
            break on_lane;
        };
        if opened_on_lane {
            on_lane += 1;
        } else {
            on_first += 1;
        }
        let (status, _, _) = visit.await??;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(
        (on_first, on_lane),
        (3, 3),
        "six new streams alternate between the session and its lane"
    );
    edge.stop().await
}

#[tokio::test]
async fn a_lane_must_prove_it_belongs_to_the_session() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let witness = Witness::start(&edge).await?;
    let (_first, welcome) = RawAgent::welcomed(&edge, "guarded").await?;
    let key = welcome.lane_key.clone().context("the edge offers lanes")?;
    let (_second, other) = RawAgent::welcomed(&edge, "guarded-other").await?;

    let cases: Vec<(&str, Join, RejectCode, &str)> = vec![
        (
            "a wrong key",
            Join {
                session_id: welcome.session_id.clone(),
                key: LaneKey("0123456789abcdef0123456789abcdef".into()),
            },
            RejectCode::Forbidden,
            "no session",
        ),
        (
            "an unknown session",
            Join {
                session_id: "s_0000000000000000".into(),
                key: key.clone(),
            },
            RejectCode::Forbidden,
            "no session",
        ),
        (
            "the key of another session",
            Join {
                session_id: welcome.session_id.clone(),
                key: other.lane_key.clone().context("the edge offers lanes")?,
            },
            RejectCode::Forbidden,
            "no session",
        ),
        (
            "an oversized key",
            Join {
                session_id: welcome.session_id.clone(),
                key: LaneKey("k".repeat(4096)),
            },
            RejectCode::BadRequest,
            "at most",
        ),
    ];
    for (what, join, code, says) in cases {
        let mut raw = RawAgent::connect(&edge).await?;
        let mut hello = hello(TEST_TOKEN, Some("guarded"));
        hello.join = Some(join);
        raw.ws.send(binary(&[hello.into_frame()])).await?;
        let reject = raw.expect_reject().await.context(what)?;
        assert_eq!(reject.code, code, "{what}: {}", reject.message);
        assert!(reject.message.contains(says), "{what}: {}", reject.message);
    }

    // The right key with other tunnels than the session's.
    let mut raw = RawAgent::connect(&edge).await?;
    let mut two = hello(TEST_TOKEN, Some("guarded"));
    two.tunnels.push(TunnelRequest {
        id: TunnelId(1),
        protocol: TunnelProtocol::Http,
        subdomain: Some("guarded-too".into()),
        local_addr: "127.0.0.1:9".into(),
        host_header: None,
    });
    two.join = Some(Join {
        session_id: welcome.session_id.clone(),
        key: key.clone(),
    });
    raw.ws.send(binary(&[two.into_frame()])).await?;
    let reject = raw.expect_reject().await?;
    assert_eq!(reject.code, RejectCode::BadRequest);
    assert!(
        reject.message.contains("exactly the tunnels"),
        "{}",
        reject.message
    );

    // A bad token is refused before anything else, key or not.
    let mut raw = RawAgent::connect(&edge).await?;
    let mut stranger = hello("wrn_not_a_token", Some("guarded"));
    stranger.join = Some(Join {
        session_id: welcome.session_id.clone(),
        key,
    });
    raw.ws.send(binary(&[stranger.into_frame()])).await?;
    assert_eq!(raw.expect_reject().await?.code, RejectCode::Unauthorized);

    witness.assert_serves(&edge).await?;
    witness.stop().await;
    edge.stop().await
}

#[tokio::test]
async fn lanes_end_with_their_session_and_cannot_be_joined_after() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let edge = TestEdge::start().await?;
    let (mut first, welcome) = RawAgent::welcomed(&edge, "shortlived").await?;
    let (mut lane, _) = RawAgent::joined(&edge, &welcome).await?;
    first.ws.close(None).await?;
    let (code, message) = lane.expect_goaway().await?;
    assert_eq!(code, GoAwayCode::Normal);
    assert!(message.contains("ended"), "{message}");
    lane.expect_closed_after_optional_goaway().await?;

    let mut late = RawAgent::connect(&edge).await?;
    let mut hello = hello(TEST_TOKEN, Some("shortlived"));
    hello.join = Some(Join {
        session_id: welcome.session_id.clone(),
        key: welcome.lane_key.clone().context("the edge offers lanes")?,
    });
    late.ws.send(binary(&[hello.into_frame()])).await?;
    assert_eq!(late.expect_reject().await?.code, RejectCode::Forbidden);
    edge.stop().await
}

#[tokio::test]
async fn an_agent_with_three_sessions_serves_rejoins_after_an_edge_restart_and_stops_cleanly()
-> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = Origin::start().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let edge = TestEdge::start_on(TestEdge::config(), listener).await?;
    let mut options = agent_options(&edge, origin.port(), Some("threelane"));
    options.sessions = 3;
    let mut agent = TestAgent::start_with(options).await?;
    let first = lanes_ready(&mut agent, 2).await?;
    serves_concurrently(&edge, &agent.hostname, 24).await?;

    // The edge goes away: the session and its lanes are lost; the new session gets new lanes.
    edge.stop().await?;
    agent
        .wait_for(|e| matches!(e, AgentEvent::Reconnecting { .. }))
        .await?;
    let edge = TestEdge::start_on(TestEdge::config(), bind_again(addr).await?).await?;
    agent
        .wait_for(|e| matches!(e, AgentEvent::TunnelReady { .. }))
        .await?;
    let second = lanes_ready(&mut agent, 2).await?;
    assert_ne!(first, second, "the lanes joined the new session");
    serves_concurrently(&edge, &agent.hostname, 24).await?;

    let refused: Vec<_> = agent
        .drain_events()
        .into_iter()
        .filter(
            |e| matches!(e, AgentEvent::Notice { message } if message.contains("could not join")),
        )
        .collect();
    assert!(refused.is_empty(), "every lane joins: {refused:?}");
    match agent.stop().await {
        Some(Ok(())) => {}
        other => bail!("the agent should stop cleanly, not {other:?}"),
    }
    edge.stop().await
}

/// Waits for `n` lanes to join, and returns the session they joined (the same for all).
async fn lanes_ready(agent: &mut TestAgent, n: usize) -> anyhow::Result<String> {
    let mut joined = Vec::new();
    while joined.len() < n {
        if let AgentEvent::LaneReady {
            joined: session, ..
        } = agent
            .wait_for(|e| matches!(e, AgentEvent::LaneReady { .. }))
            .await?
        {
            joined.push(session);
        }
    }
    joined.dedup();
    match joined.as_slice() {
        [session] => Ok(session.clone()),
        other => bail!("lanes joined different sessions: {other:?}"),
    }
}

/// `n` concurrent `GET /hello` through the tunnel all answer the origin's greeting.
async fn serves_concurrently(edge: &TestEdge, hostname: &str, n: usize) -> anyhow::Result<()> {
    let visits: Vec<_> = (0..n)
        .map(|_| {
            let (addr, host) = (edge.addr, hostname.to_string());
            tokio::spawn(async move { client::get(addr, &host, "/hello").await })
        })
        .collect();
    for visit in visits {
        let (status, _, body) = tokio::time::timeout(DEADLINE, visit).await???;
        ensure!(
            status == StatusCode::OK && &body[..] == b"hello from origin",
            "GET /hello through {hostname}: {status} {body:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A real agent with a real tunnel, whose requests must keep succeeding.
struct Witness {
    _origin: Origin,
    agent: TestAgent,
}

impl Witness {
    async fn start(edge: &TestEdge) -> anyhow::Result<Witness> {
        let origin = Origin::start().await?;
        let agent = TestAgent::start(edge, origin.port(), Some("witness")).await?;
        Ok(Witness {
            _origin: origin,
            agent,
        })
    }

    async fn assert_serves(&self, edge: &TestEdge) -> anyhow::Result<()> {
        assert_serves(edge, &self.agent.hostname)
            .await
            .context("the witness tunnel stopped serving")
    }

    async fn stop(self) {
        self.agent.stop().await;
    }
}

/// `GET /hello` through the tunnel at `hostname` answers the origin's greeting.
async fn assert_serves(edge: &TestEdge, hostname: &str) -> anyhow::Result<()> {
    let (status, _, body) =
        tokio::time::timeout(DEADLINE, client::get(edge.addr, hostname, "/hello"))
            .await
            .with_context(|| format!("GET through {hostname} hung"))??;
    ensure!(
        status == StatusCode::OK && &body[..] == b"hello from origin",
        "GET through {hostname}: {status} {:?}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// Sends `GET /hello` for `hostname` and returns it once it is being held (still waiting after
/// 300 ms). A request that raced the edge noticing the agent's death may get a quick 502
/// instead; it is sent again.
async fn held_request(
    edge: &TestEdge,
    hostname: &str,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<(StatusCode, http::HeaderMap, Bytes)>>> {
    for _ in 0..20 {
        let (addr, host) = (edge.addr, hostname.to_string());
        let request = tokio::spawn(async move { client::get(addr, &host, "/hello").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !request.is_finished() {
            return Ok(request);
        }
        let (status, _, _) = request.await??;
        ensure!(
            status == StatusCode::BAD_GATEWAY,
            "unexpected {status} in the gap"
        );
    }
    bail!("no request to {hostname} was held while its agent was away")
}

/// Polls `hostname` until the edge no longer serves it (404). Until then every request must
/// get a quick 404 or 502: a tunnel whose agent is gone never makes a visitor hang.
async fn wait_until_gone(edge: &TestEdge, hostname: &str) -> anyhow::Result<()> {
    let per_request = Duration::from_secs(5);
    poll_until(|| async move {
        let (status, _, body) =
            tokio::time::timeout(per_request, client::get(edge.addr, hostname, "/hello"))
                .await
                .with_context(|| format!("a request to {hostname} hung for {per_request:?}"))??;
        match status {
            StatusCode::NOT_FOUND => Ok(true),
            StatusCode::BAD_GATEWAY => Ok(false),
            other => bail!(
                "{hostname} answered {other} {:?}; expected 404 or 502",
                String::from_utf8_lossy(&body)
            ),
        }
    })
    .await
    .with_context(|| format!("{hostname} was still served after {DEADLINE:?}"))
}

/// Calls `check` every 20 ms until it returns true, for at most [`DEADLINE`].
async fn poll_until<F, Fut>(mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Binds `addr` again once the previous listener on it is gone.
async fn bind_again(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "port not free yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("bind {addr} again")),
        }
    }
}

/// A HELLO for one tunnel.
fn hello(token: &str, subdomain: Option<&str>) -> Hello {
    Hello {
        agent_version: "sessions-test".into(),
        credential: Credential::Token(token.into()),
        tunnels: vec![TunnelRequest {
            id: TunnelId(0),
            protocol: TunnelProtocol::Http,
            subdomain: subdomain.map(str::to_string),
            local_addr: "127.0.0.1:9".into(),
            host_header: None,
        }],
        settings: Settings::default(),
        request_log: false,
        request_log_batches: false,
        request_log_compact: false,
        join: None,
        dynamic_tunnels: false,
    }
}

/// One binary message holding `frames`.
fn binary(frames: &[Frame]) -> Message {
    Message::Binary(concat(
        &frames.iter().map(Frame::to_bytes).collect::<Vec<_>>(),
    ))
}

fn concat(parts: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for part in parts {
        out.put_slice(part);
    }
    out.freeze()
}

/// A bare frame header, with no payload after it.
fn raw_header(len: u32, kind: u8, stream: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN);
    out.put_u32(len);
    out.put_u8(kind);
    out.put_u32(stream);
    out.freeze()
}

fn data(stream: u32, len: usize) -> Bytes {
    Frame::Data {
        stream: StreamId(stream),
        payload: Bytes::from(vec![b'x'; len]),
    }
    .to_bytes()
}

/// A hand-driven agent connection: frames go out exactly as the test builds them, and nothing
/// is answered unless the test does it.
struct RawAgent {
    ws: ClientWebSocket,
    /// PINGs the edge sent so far (never answered).
    pings: usize,
}

impl RawAgent {
    async fn connect(edge: &TestEdge) -> anyhow::Result<RawAgent> {
        let ws = client::websocket(edge.addr, "localhost", TUNNEL_PATH).await?;
        Ok(RawAgent { ws, pings: 0 })
    }

    /// Connects and completes a handshake for `subdomain`.
    async fn welcomed(edge: &TestEdge, subdomain: &str) -> anyhow::Result<(RawAgent, Welcome)> {
        let mut raw = RawAgent::connect(edge).await?;
        raw.ws
            .send(binary(&[hello(TEST_TOKEN, Some(subdomain)).into_frame()]))
            .await?;
        let frames = raw
            .next_frames()
            .await?
            .context("closed during the handshake")?;
        match frames.as_slice() {
            [Frame::Welcome { body }] => Ok((raw, Welcome::from_json(body)?)),
            other => bail!("expected WELCOME, got {other:?}"),
        }
    }

    /// Connects and joins the session `welcome` accepted, as a lane.
    async fn joined(edge: &TestEdge, welcome: &Welcome) -> anyhow::Result<(RawAgent, Welcome)> {
        let mut raw = RawAgent::connect(edge).await?;
        let mut hello = hello(TEST_TOKEN, None);
        hello.join = Some(Join {
            session_id: welcome.session_id.clone(),
            key: welcome
                .lane_key
                .clone()
                .context("the edge offered no lane key")?,
        });
        raw.ws.send(binary(&[hello.into_frame()])).await?;
        let frames = raw
            .next_frames()
            .await?
            .context("closed during the lane handshake")?;
        match frames.as_slice() {
            [Frame::Welcome { body }] => Ok((raw, Welcome::from_json(body)?)),
            [Frame::Reject { body }] => bail!("lane refused: {:?}", Reject::from_json(body)?),
            other => bail!("expected WELCOME, got {other:?}"),
        }
    }

    /// The frames of the next binary message, or `None` once the edge closed the connection.
    async fn next_frames(&mut self) -> anyhow::Result<Option<Vec<Frame>>> {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .context("the edge neither sent anything nor closed")?;
            match message {
                Some(Ok(Message::Binary(data))) => {
                    let frames = Frame::decode_message(data)?;
                    self.pings += frames
                        .iter()
                        .filter(|f| matches!(f, Frame::Ping { .. }))
                        .count();
                    return Ok(Some(frames));
                }
                Some(Ok(Message::Text(text))) => bail!("the edge sent a text message: {text}"),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                // A reset without a closing handshake is still the edge closing.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "raw agent connection ended");
                    return Ok(None);
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The REJECT the edge answers with; the connection must close after it.
    async fn expect_reject(&mut self) -> anyhow::Result<Reject> {
        let frames = self
            .next_frames()
            .await?
            .context("the edge closed without a REJECT")?;
        let reject = match frames.as_slice() {
            [Frame::Reject { body }] => Reject::from_json(body)?,
            other => bail!("expected one REJECT, got {other:?}"),
        };
        self.expect_closed().await?;
        Ok(reject)
    }

    /// Reads up to the edge's GOAWAY, skipping heartbeats and window updates.
    async fn expect_goaway(&mut self) -> anyhow::Result<(GoAwayCode, String)> {
        loop {
            let frames = self
                .next_frames()
                .await?
                .context("the edge closed without a GOAWAY")?;
            for frame in frames {
                if let Frame::GoAway { code, message } = frame {
                    return Ok((code, message));
                }
            }
        }
    }

    /// Waits for the edge to close the connection; only heartbeats may arrive first.
    async fn expect_closed(&mut self) -> anyhow::Result<()> {
        while let Some(frames) = self.next_frames().await? {
            if let Some(other) = frames
                .iter()
                .find(|f| !matches!(f, Frame::Ping { .. } | Frame::Pong { .. }))
            {
                bail!(
                    "expected the connection to close, got {}",
                    other.kind_name()
                );
            }
        }
        Ok(())
    }

    /// Like [`RawAgent::expect_closed`], tolerating a GOAWAY first.
    async fn expect_closed_after_optional_goaway(&mut self) -> anyhow::Result<()> {
        while let Some(frames) = self.next_frames().await? {
            if let Some(other) = frames.iter().find(|f| {
                !matches!(
                    f,
                    Frame::Ping { .. } | Frame::Pong { .. } | Frame::GoAway { .. }
                )
            }) {
                bail!(
                    "expected the connection to close, got {}",
                    other.kind_name()
                );
            }
        }
        Ok(())
    }
}

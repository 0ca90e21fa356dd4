//! Dynamic tunnels (`warren mcp`): a session whose HELLO set `dynamic_tunnels` opens and closes
//! tunnels after the handshake, each with its own grant, and outlives its last tunnel. The
//! edge answers `tunnel_opened` only once visitors get through.

mod support;

use http::StatusCode;
use std::time::Duration;
use support::{Agent, DEADLINE, Edge, FakeControl, Key, claims, hello, visit};
use warren_proto::TunnelId;
use warren_proto::control::{
    Credential, Event, GrantToken, RejectCode, TunnelProtocol, TunnelRequest,
};
use warren_proto::report::{CloseTunnel, SessionEvent};
use warren_session::SessionEvent as MuxEvent;

fn spec(id: u32, subdomain: &str) -> TunnelRequest {
    TunnelRequest {
        id: TunnelId(id),
        protocol: TunnelProtocol::Http,
        subdomain: Some(subdomain.into()),
        local_addr: "127.0.0.1:3000".into(),
        host_header: None,
    }
}

async fn dynamic_agent(edge: &Edge, key: &Key) -> Agent {
    let mut hello = hello(Credential::Grant(key.sign(&claims("first"))), &[]);
    hello.dynamic_tunnels = true;
    let agent = Agent::connect(edge, hello)
        .await
        .expect("dynamic HELLO accepted");
    assert!(agent.welcome.dynamic_tunnels);
    assert!(agent.welcome.tunnels.is_empty());
    agent
}

/// The next control message from the edge (heartbeats and the like are skipped).
async fn next(agent: &mut Agent) -> Event {
    loop {
        match tokio::time::timeout(DEADLINE, agent.events.recv()).await {
            Ok(Some(MuxEvent::Message(event))) => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended"),
            Err(_) => panic!("no message from the edge within {DEADLINE:?}"),
        }
    }
}

async fn open(agent: &mut Agent, key: &Key, id: u32, name: &str) -> Event {
    agent.session.send_message(&Event::OpenTunnel {
        spec: spec(id, name),
        grant: Some(GrantToken(key.sign(&claims(name)))),
    });
    next(agent).await
}

fn refused(event: Event, code: RejectCode, words: &str) {
    match event {
        Event::TunnelRefused {
            code: got, message, ..
        } => {
            assert_eq!(got, code, "{message}");
            assert!(message.contains(words), "{message:?} should say {words:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn wait_status(edge: &Edge, host: &str, status: StatusCode) {
    let started = tokio::time::Instant::now();
    loop {
        if visit(edge, host, "GET", b"").await.0 == status {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{host} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tunnels_open_and_close_on_a_live_session_each_with_its_grant() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let mut agent = dynamic_agent(&edge, &key).await;

    // Opened means routable: no wait between the answer and the first visitor.
    match open(&mut agent, &key, 1, "alpha").await {
        Event::TunnelOpened {
            id,
            hostname,
            public_url,
        } => {
            assert_eq!(id, TunnelId(1));
            assert_eq!(hostname, "alpha.localhost");
            assert!(public_url.contains("alpha.localhost"), "{public_url}");
        }
        other => panic!("expected tunnel_opened, got {other:?}"),
    }
    let (status, body) = visit(&edge, "alpha.localhost", "GET", b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"hello from /path");
    assert!(matches!(
        open(&mut agent, &key, 2, "beta").await,
        Event::TunnelOpened { .. }
    ));
    assert_eq!(
        visit(&edge, "beta.localhost", "GET", b"").await.0,
        StatusCode::OK
    );

    // Refusals, each with its code and a reason; the session carries on.
    refused(
        open(&mut agent, &key, 2, "gamma").await,
        RejectCode::BadRequest,
        "already used",
    );
    agent.session.send_message(&Event::OpenTunnel {
        spec: spec(3, "gamma"),
        grant: None,
    });
    refused(
        next(&mut agent).await,
        RejectCode::Unauthorized,
        "its own grant",
    );
    let mut stranger = claims("gamma");
    stranger.sub = "acct_2".into();
    agent.session.send_message(&Event::OpenTunnel {
        spec: spec(3, "gamma"),
        grant: Some(GrantToken(key.sign(&stranger))),
    });
    refused(
        next(&mut agent).await,
        RejectCode::Forbidden,
        "another account",
    );
    agent.session.send_message(&Event::OpenTunnel {
        spec: spec(3, "delta"),
        grant: Some(GrantToken(key.sign(&claims("gamma")))),
    });
    refused(
        next(&mut agent).await,
        RejectCode::Forbidden,
        "the grant is for",
    );
    // A protocol from the future is read and refused, not a protocol error.
    let grant = key.sign(&claims("gamma"));
    agent.session.send_event_body(bytes::Bytes::from(format!(
        r#"{{"type":"open_tunnel","spec":{{"id":4,"protocol":"tcp","local_addr":"127.0.0.1:5432"}},"grant":"{grant}"}}"#
    )));
    refused(
        next(&mut agent).await,
        RejectCode::BadRequest,
        "http tunnels only",
    );

    // close_tunnel: gone for visitors at once; the other tunnel and the session stay.
    agent
        .session
        .send_message(&Event::CloseTunnel { id: TunnelId(1) });
    assert!(matches!(
        next(&mut agent).await,
        Event::TunnelClosed {
            id: TunnelId(1),
            ..
        }
    ));
    assert_eq!(
        visit(&edge, "alpha.localhost", "GET", b"").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        visit(&edge, "beta.localhost", "GET", b"").await.0,
        StatusCode::OK
    );
    agent
        .session
        .send_message(&Event::CloseTunnel { id: TunnelId(1) });
    refused(
        next(&mut agent).await,
        RejectCode::UnknownTunnel,
        "no dynamic tunnel 1",
    );

    // The last tunnel closed, the session is still there to open the next.
    agent
        .session
        .send_message(&Event::CloseTunnel { id: TunnelId(2) });
    assert!(matches!(
        next(&mut agent).await,
        Event::TunnelClosed {
            id: TunnelId(2),
            ..
        }
    ));
    assert!(!agent.session.is_ended() && !agent.session.is_going_away());
    assert!(matches!(
        open(&mut agent, &key, 5, "alpha").await,
        Event::TunnelOpened { .. }
    ));
    assert_eq!(
        visit(&edge, "alpha.localhost", "GET", b"").await.0,
        StatusCode::OK
    );

    // Control heard each tunnel start and end under its own grant's tunnel id.
    control
        .wait_for_event(|e| match e {
            SessionEvent::Ended { tunnel_id, .. } if tunnel_id == "t_beta" => Some(()),
            _ => None,
        })
        .await;
    let started: Vec<String> = control
        .events()
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Started { tunnel_id, .. } => Some(tunnel_id.clone()),
            _ => None,
        })
        .collect();
    assert!(
        started.contains(&"t_alpha".to_string()) && started.contains(&"t_beta".to_string()),
        "{started:?}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn closing_or_taking_over_one_dynamic_tunnel_leaves_the_session_and_the_others() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let mut agent = dynamic_agent(&edge, &key).await;
    assert!(matches!(
        open(&mut agent, &key, 1, "alpha").await,
        Event::TunnelOpened { .. }
    ));
    assert!(matches!(
        open(&mut agent, &key, 2, "beta").await,
        Event::TunnelOpened { .. }
    ));
    assert!(matches!(
        open(&mut agent, &key, 3, "gamma").await,
        Event::TunnelOpened { .. }
    ));

    // Control closes alpha (the API's DELETE): the agent is told, nothing else ends.
    control.with(|state| {
        state.close.push(CloseTunnel {
            tunnel_id: "t_alpha".into(),
            reason: "closed through the API".into(),
            until: support::now() + 3600,
        })
    });
    match next(&mut agent).await {
        Event::TunnelClosed { id, reason } => {
            assert_eq!(id, TunnelId(1));
            assert!(reason.contains("closed through the API"), "{reason}");
        }
        other => panic!("expected tunnel_closed, got {other:?}"),
    }
    wait_status(&edge, "alpha.localhost", StatusCode::NOT_FOUND).await;

    // Another session of the account takes beta over: only beta leaves this session.
    let _newer = Agent::connect_grant(&edge, &key.sign(&claims("beta")), Some("beta"))
        .await
        .expect("newer session");
    assert!(matches!(
        next(&mut agent).await,
        Event::TunnelClosed {
            id: TunnelId(2),
            ..
        }
    ));
    assert_eq!(
        visit(&edge, "gamma.localhost", "GET", b"").await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!agent.session.is_going_away(), "the session must not drain");
    assert_eq!(
        visit(&edge, "gamma.localhost", "GET", b"").await.0,
        StatusCode::OK
    );
    edge.stop().await;
}

#[tokio::test]
async fn only_dynamic_sessions_start_empty_or_open_tunnels_later() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let empty = hello(Credential::Grant(key.sign(&claims("first"))), &[]);
    match Agent::connect(&edge, empty).await {
        Err(reject) => assert_eq!(reject.code, RejectCode::BadRequest, "{}", reject.message),
        Ok(_) => panic!("a HELLO with no tunnel and no dynamic_tunnels was accepted"),
    }
    let mut fixed = Agent::connect_grant(&edge, &key.sign(&claims("fixed")), Some("fixed"))
        .await
        .expect("plain session");
    assert!(!fixed.welcome.dynamic_tunnels);
    fixed.session.send_message(&Event::OpenTunnel {
        spec: spec(7, "other"),
        grant: Some(GrantToken(key.sign(&claims("other")))),
    });
    // The edge does not serve it: no answer, no route.
    let quiet = tokio::time::timeout(Duration::from_millis(500), next(&mut fixed)).await;
    assert!(quiet.is_err(), "unexpected answer {quiet:?}");
    assert_eq!(
        visit(&edge, "other.localhost", "GET", b"").await.0,
        StatusCode::NOT_FOUND
    );
    edge.stop().await;
}

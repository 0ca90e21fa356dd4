//! Reports: an edge connected to a (small, real) control tells it when granted tunnels start
//! and end and what traffic they carried, and closes the tunnels control says to close.

mod support;

use http::StatusCode;
use std::time::{Duration, Instant};
use support::{Agent, Edge, FakeControl, Key, claims, now, poll, visit};
use warren_proto::control::{Event, RejectCode};
use warren_proto::error::GoAwayCode;
use warren_proto::report::{CloseTunnel, SessionEvent};
use warren_session::SessionEvent as MuxEvent;

#[tokio::test]
async fn sessions_are_reported_with_their_traffic() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let agent = Agent::connect_grant(&edge, &key.sign(&claims("demo")), Some("demo"))
        .await
        .expect("grant accepted");
    let session_id = agent.welcome.session_id.clone();

    let (agent_version, hostname, account) = control
        .wait_for_event(|e| match e {
            SessionEvent::Started {
                tunnel_id,
                session_id: s,
                agent_version,
                hostname,
                account_id,
                token_id,
                agent_addr,
                ..
            } if tunnel_id == "t_demo" && *s == session_id => {
                assert_eq!(token_id, "0123456789abcdef");
                assert!(agent_addr.starts_with("127.0.0.1:"), "{agent_addr}");
                Some((agent_version.clone(), hostname.clone(), account_id.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(agent_version, "warren-test 0");
    assert_eq!(hostname, "demo.localhost");
    assert_eq!(account, "acct_1");

    // Two requests: a GET (16 bytes back) and a POST of 1000 bytes echoed back.
    let (status, body) = visit(&edge, "demo.localhost", "GET", b"").await;
    assert_eq!((status, body.len()), (StatusCode::OK, 16));
    let upload = vec![b'x'; 1000];
    let (status, body) = visit(&edge, "demo.localhost", "POST", &upload).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 1000));
    control
        .wait_for_event(|e| match e {
            SessionEvent::Counters {
                session_id: s,
                bytes_in: 1000,
                bytes_out: 1016,
                requests: 2,
                ..
            } if *s == session_id => Some(()),
            _ => None,
        })
        .await;

    // Live tunnels are listed in every report, and the secret was always presented.
    assert!(control.with(|s| s.reports.iter().any(|r| r.live == ["t_demo"])));
    assert_eq!(control.with(|s| s.bad_auth), 0);
    let report = control.with(|s| s.reports[0].clone());
    assert_eq!(report.region, "local");

    // The agent goes away: Ended, with the final counters and a reason.
    agent.session.close();
    let reason = control
        .wait_for_event(|e| match e {
            SessionEvent::Ended {
                session_id: s,
                reason,
                bytes_in,
                bytes_out,
                requests,
                ..
            } if *s == session_id => {
                assert_eq!((*bytes_in, *bytes_out, *requests), (1000, 1016, 2));
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("agent gone"), "{reason}");
    // Nothing is live any more.
    poll(|| control.with(|s| s.reports.last().filter(|r| r.live.is_empty()).map(|_| ()))).await;
    edge.stop().await;
}

#[tokio::test]
async fn heartbeats_arrive_with_nothing_to_report() {
    let control = FakeControl::start(vec![Key::new("k1").jwk()]).await;
    let edge = Edge::start(&control).await;
    // One report within the heartbeat interval (5 s), though nothing happened.
    poll(|| control.with(|s| (!s.reports.is_empty()).then_some(()))).await;
    let report = control.with(|s| s.reports[0].clone());
    assert!(report.events.is_empty() && report.live.is_empty());
    assert!(!report.edge_id.is_empty());
    edge.stop().await;
}

#[tokio::test]
async fn control_closes_a_tunnel_within_a_second_and_its_grant_is_refused_after() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let grant = key.sign(&claims("demo"));
    let mut agent = Agent::connect_grant(&edge, &grant, None)
        .await
        .expect("grant accepted");
    let (status, _) = visit(&edge, "demo.localhost", "GET", b"").await;
    assert_eq!(status, StatusCode::OK);

    let asked = Instant::now();
    control.with(|s| {
        s.close.push(CloseTunnel {
            tunnel_id: "t_demo".into(),
            reason: "closed by alice".into(),
            until: now() + 3600,
        })
    });
    // The agent is told why (TunnelClosed, then GOAWAY Closed: do not reconnect) and the
    // session ends, all within a second of control's answer (reports go every 500 ms).
    let mut told = None;
    let mut goaway = None;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_secs(3), agent.events.recv()).await
    {
        match event {
            MuxEvent::Message(Event::TunnelClosed { reason, .. }) => told = Some(reason),
            MuxEvent::GoAway { code, message } => goaway = Some((code, message)),
            _ => {}
        }
        if told.is_some() && goaway.is_some() {
            break;
        }
    }
    let told = told.expect("TunnelClosed event");
    assert!(
        told.contains("closed by alice") && told.contains("warren http"),
        "{told}"
    );
    let (code, message) = goaway.expect("GOAWAY");
    assert_eq!(code, GoAwayCode::Closed);
    assert!(!code.should_reconnect());
    assert!(message.contains("closed by alice"), "{message}");
    tokio::time::timeout(Duration::from_secs(2), agent.session.ended())
        .await
        .expect("session ended");
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        asked.elapsed()
    );
    let (status, _) = visit(&edge, "demo.localhost", "GET", b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ended says why, and the same grant cannot open the tunnel again.
    let reason = control
        .wait_for_event(|e| match e {
            SessionEvent::Ended {
                tunnel_id, reason, ..
            } if tunnel_id == "t_demo" => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("closed by alice"), "{reason}");
    match Agent::connect_grant(&edge, &grant, None).await {
        Ok(_) => panic!("a closed tunnel's grant was accepted"),
        Err(reject) => {
            assert_eq!(reject.code, RejectCode::Forbidden);
            assert!(
                reject.message.contains("closed through the API"),
                "{}",
                reject.message
            );
        }
    }
    edge.stop().await;
}

#[tokio::test]
async fn shutdown_reports_the_sessions_it_ended() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let agent = Agent::connect_grant(&edge, &key.sign(&claims("demo")), None)
        .await
        .expect("grant accepted");
    control
        .wait_for_event(|e| matches!(e, SessionEvent::Started { .. }).then_some(()))
        .await;
    // Like the real agent, the test agent leaves on GOAWAY.
    let agent_session = agent.session.clone();
    tokio::spawn(async move {
        let mut events = agent.events;
        while let Some(event) = events.recv().await {
            if matches!(event, MuxEvent::GoAway { .. }) {
                agent_session.close();
            }
        }
    });
    edge.stop().await;
    let reason = control
        .wait_for_event(|e| match e {
            SessionEvent::Ended { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "edge shutting down");
}

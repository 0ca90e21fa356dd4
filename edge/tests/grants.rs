//! Grants: an edge connected to a (small, real) control verifies them offline with control's
//! keys and refuses bad ones with the right code and a sentence that says what to do.

mod support;

use http::StatusCode;
use support::{Agent, Edge, FakeControl, Key, claims, now, poll, visit};
use warren_proto::control::{Credential, RejectCode};

fn assert_refused(
    result: Result<Agent, warren_proto::control::Reject>,
    code: RejectCode,
    words: &str,
) {
    match result {
        Ok(_) => panic!("accepted; expected {code:?}"),
        Err(reject) => {
            assert_eq!(reject.code, code, "{}", reject.message);
            assert!(
                reject.message.contains(words),
                "message {:?} should mention {words:?}",
                reject.message
            );
        }
    }
}

#[tokio::test]
async fn a_valid_grant_opens_its_tunnel_and_visitors_get_through() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let agent = Agent::connect_grant(&edge, &key.sign(&claims("demo")), Some("demo"))
        .await
        .expect("grant accepted");
    assert_eq!(agent.welcome.tunnels[0].hostname, "demo.localhost");
    let (status, body) = visit(&edge, "demo.localhost", "GET", b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"hello from /path");

    // Without a subdomain in the HELLO, the grant's hostname is used.
    let agent2 = Agent::connect_grant(&edge, &key.sign(&claims("other")), None)
        .await
        .expect("grant accepted");
    assert_eq!(agent2.welcome.tunnels[0].hostname, "other.localhost");
    edge.stop().await;
}

#[tokio::test]
async fn bad_grants_are_refused_with_the_right_code_and_a_reason() {
    let key = Key::new("k1");
    // Same key id, another key: a forgery.
    let forger = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;

    let forged = forger.sign(&claims("demo"));
    assert_refused(
        Agent::connect_grant(&edge, &forged, Some("demo")).await,
        RejectCode::Unauthorized,
        "signature",
    );

    let mut expired = claims("demo");
    expired.exp = now() - 120;
    assert_refused(
        Agent::connect_grant(&edge, &key.sign(&expired), Some("demo")).await,
        RejectCode::Unauthorized,
        "expired",
    );

    let mut audience = claims("demo");
    audience.aud = "someone-else".into();
    assert_refused(
        Agent::connect_grant(&edge, &key.sign(&audience), Some("demo")).await,
        RejectCode::Unauthorized,
        "audience",
    );

    let mut region = claims("demo");
    region.region = "eu".into();
    assert_refused(
        Agent::connect_grant(&edge, &key.sign(&region), Some("demo")).await,
        RejectCode::Forbidden,
        "region",
    );

    let mut host = claims("demo");
    host.hostname = "demo.example.net".into();
    assert_refused(
        Agent::connect_grant(&edge, &key.sign(&host), Some("demo")).await,
        RejectCode::Forbidden,
        "does not serve",
    );

    // A valid grant for one name does not open another.
    let grant = key.sign(&claims("demo"));
    assert_refused(
        Agent::connect_grant(&edge, &grant, Some("other")).await,
        RejectCode::Forbidden,
        "demo.localhost",
    );
    let two = support::hello(
        Credential::Grant(grant.clone()),
        &[Some("demo"), Some("demo2")],
    );
    assert_refused(
        Agent::connect(&edge, two).await,
        RejectCode::BadRequest,
        "exactly one tunnel",
    );

    assert_refused(
        Agent::connect_grant(&edge, "not.a.jwt", Some("demo")).await,
        RejectCode::Unauthorized,
        "run `warren http` again",
    );
    // This edge has no static tokens.
    let token = support::hello(Credential::Token("wrn_x".into()), &[Some("demo")]);
    assert_refused(
        Agent::connect(&edge, token).await,
        RejectCode::Unauthorized,
        "grants",
    );
    edge.stop().await;
}

#[tokio::test]
async fn unknown_keys_trigger_one_rate_limited_refetch() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let fetches = control.with(|s| s.jwks_fetches);
    assert_eq!(fetches, 1, "keys are fetched at start");

    let stranger = Key::new("k-unknown");
    let grant = stranger.sign(&claims("demo"));
    assert_refused(
        Agent::connect_grant(&edge, &grant, Some("demo")).await,
        RejectCode::Unauthorized,
        "does not know",
    );
    assert_eq!(
        control.with(|s| s.jwks_fetches),
        2,
        "an unknown key refetches once"
    );
    // Made-up key ids right after do not make the edge hammer control.
    for i in 0..5 {
        let other = Key::new(&format!("k-made-up-{i}"));
        assert_refused(
            Agent::connect_grant(&edge, &other.sign(&claims("demo")), Some("demo")).await,
            RejectCode::Unauthorized,
            "does not know",
        );
    }
    assert_eq!(
        control.with(|s| s.jwks_fetches),
        2,
        "refetches are rate-limited"
    );
    edge.stop().await;
}

#[tokio::test]
async fn rotated_keys_verify_and_a_new_key_is_fetched_on_first_use() {
    let old = Key::new("k-old");
    let control = FakeControl::start(vec![old.jwk()]).await;
    let edge = Edge::start(&control).await;
    let _a = Agent::connect_grant(&edge, &old.sign(&claims("one")), None)
        .await
        .expect("old key verifies");

    // Control rotates: it publishes a new key next to the old one and signs with the new one.
    let new = Key::new("k-new");
    control.with(|s| s.keys.push(new.jwk()));
    let before = control.with(|s| s.jwks_fetches);
    let _b = Agent::connect_grant(&edge, &new.sign(&claims("two")), None)
        .await
        .expect("new key fetched and verifies");
    assert_eq!(control.with(|s| s.jwks_fetches), before + 1);
    let _c = Agent::connect_grant(&edge, &old.sign(&claims("three")), None)
        .await
        .expect("old key still verifies during rotation");
    edge.stop().await;
}

#[tokio::test]
async fn cached_keys_keep_working_while_control_is_down() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    control.stop();
    control.with(|s| s.down = true);
    let agent = Agent::connect_grant(&edge, &key.sign(&claims("demo")), None)
        .await
        .expect("cached key verifies with control down");
    let (status, _) = visit(&edge, "demo.localhost", "GET", b"").await;
    assert_eq!(status, StatusCode::OK);
    drop(agent);
    // The edge keeps serving and its reports fail quietly; nothing here may hang.
    poll(|| (!edge.shutdown.is_cancelled()).then_some(())).await;
    edge.stop().await;
}

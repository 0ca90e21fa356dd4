//! Edge reports: authentication, idempotent counters, reconnects, closing through the API.

use hyper::Method;
use serde_json::{Value, json};

use crate::common::{Ctx, EDGE_SECRET, api_tests};

async fn report(ctx: &Ctx, body: Value) -> Value {
    let r = ctx
        .call(
            Method::POST,
            "/internal/v1/reports",
            Some(EDGE_SECRET),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

struct Opened {
    tunnel: String,
    account: String,
    token_id: String,
    hostname: String,
    grant_expires_at: u64,
}

async fn open(ctx: &Ctx, token: &str) -> Opened {
    let r = ctx
        .call(
            Method::POST,
            "/v1/tunnels",
            Some(token),
            Some(json!({"protocol": "http"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let me = ctx.get("/v1/me", Some(token)).await;
    Opened {
        tunnel: r.json["tunnel_id"].as_str().expect("id").into(),
        account: me.json["account"]["id"].as_str().expect("id").into(),
        token_id: me.json["token"]["id"].as_str().expect("id").into(),
        hostname: r.json["hostname"].as_str().expect("host").into(),
        grant_expires_at: r.json["grant_expires_at"].as_u64().expect("exp"),
    }
}

fn started(t: &Opened, session: &str) -> Value {
    json!({"type": "started", "tunnel_id": t.tunnel, "session_id": session, "account_id": t.account,
           "token_id": t.token_id, "hostname": t.hostname, "agent_version": "0.1.0",
           "agent_addr": "192.0.2.1:5000", "at_ms": 1_700_000_000_000u64})
}

fn counters(t: &Opened, session: &str, bytes_in: u64, bytes_out: u64, requests: u64) -> Value {
    json!({"type": "counters", "tunnel_id": t.tunnel, "session_id": session, "bytes_in": bytes_in,
           "bytes_out": bytes_out, "requests": requests, "at_ms": 1_700_000_001_000u64})
}

fn ended(t: &Opened, session: &str, bytes_in: u64, bytes_out: u64, requests: u64) -> Value {
    json!({"type": "ended", "tunnel_id": t.tunnel, "session_id": session, "reason": "agent disconnected",
           "bytes_in": bytes_in, "bytes_out": bytes_out, "requests": requests, "at_ms": 1_700_000_002_000u64})
}

fn batch(events: Vec<Value>) -> Value {
    json!({"edge_id": "edge-1", "region": "eu", "live": [], "events": events})
}

async fn row(ctx: &Ctx, token: &str, id: &str) -> Value {
    let h = ctx.get("/v1/tunnels/history", Some(token)).await;
    h.json["tunnels"]
        .as_array()
        .expect("tunnels")
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .expect("row")
}

api_tests! {
    async fn reports_need_the_edge_secret(ctx: &Ctx) {
        let body = batch(vec![]);
        ctx.call(Method::POST, "/internal/v1/reports", None, Some(body.clone())).await.problem(401);
        ctx.call(Method::POST, "/internal/v1/reports", Some("wrong-secret"), Some(body.clone())).await.problem(401);
        let user = ctx.account("u@example.com").await;
        ctx.call(Method::POST, "/internal/v1/reports", Some(&user), Some(body)).await.problem(401);
    }

    async fn reports_apply_idempotently_and_fold_reconnects(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let t = open(ctx, &a).await;
        let first = batch(vec![started(&t, "s1"), counters(&t, "s1", 100, 200, 3)]);
        report(ctx, first.clone()).await;
        report(ctx, first).await; // a retry changes nothing
        let r = row(ctx, &a, &t.tunnel).await;
        assert_eq!((r["bytes_in"].as_u64(), r["bytes_out"].as_u64(), r["requests"].as_u64()), (Some(100), Some(200), Some(3)));
        assert_eq!(r["state"], "live");
        assert_eq!(r["edge_id"], "edge-1");
        assert_eq!(r["session_id"], "s1");
        assert_eq!(r["agent_version"], "0.1.0");
        assert_eq!(r["agent_addr"], "192.0.2.1:5000");
        assert_eq!(r["started_at"], "2023-11-14T22:13:20.000Z");
        let live = ctx.get("/v1/tunnels", Some(&a)).await;
        assert_eq!(live.json["tunnels"].as_array().map(Vec::len), Some(1), "{}", live.text);
        assert_eq!(live.json["tunnels"][0]["id"], t.tunnel.as_str());

        // Agent reconnects: a new session on the same tunnel; s1's counters fold into totals.
        let second = batch(vec![counters(&t, "s1", 150, 250, 4), started(&t, "s2"), counters(&t, "s2", 10, 20, 1)]);
        report(ctx, second.clone()).await;
        report(ctx, second).await;
        // Stale counters of the finished session are ignored.
        report(ctx, batch(vec![counters(&t, "s1", 999, 999, 99)])).await;
        let r = row(ctx, &a, &t.tunnel).await;
        assert_eq!((r["bytes_in"].as_u64(), r["bytes_out"].as_u64(), r["requests"].as_u64()), (Some(160), Some(270), Some(5)), "{r}");
        assert_eq!(r["session_id"], "s2");

        let end = batch(vec![ended(&t, "s2", 11, 22, 2)]);
        report(ctx, end.clone()).await;
        report(ctx, end).await;
        let r = row(ctx, &a, &t.tunnel).await;
        assert_eq!((r["bytes_in"].as_u64(), r["bytes_out"].as_u64(), r["requests"].as_u64()), (Some(161), Some(272), Some(6)), "{r}");
        assert_eq!(r["state"], "ended");
        assert_eq!(r["close_reason"], "agent disconnected");
        assert!(r["ended_at"].is_string());
        assert_eq!(ctx.get("/v1/tunnels", Some(&a)).await.json["tunnels"], json!([]));
    }

    async fn closing_reaches_the_edge_and_blocks_renewal(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let t = open(ctx, &a).await;
        let reply = report(ctx, batch(vec![started(&t, "s1")])).await;
        assert_eq!(reply["close"], json!([]));
        // B cannot see or close A's live tunnel.
        assert_eq!(ctx.get("/v1/tunnels", Some(&b)).await.json["tunnels"], json!([]));
        ctx.call(Method::DELETE, &format!("/v1/tunnels/{}", t.tunnel), Some(&b), None).await.problem(404);
        assert_eq!(report(ctx, batch(vec![])).await["close"], json!([]));

        let r = ctx.call(Method::DELETE, &format!("/v1/tunnels/{}", t.tunnel), Some(&a), None).await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json["state"], "ended");
        assert_eq!(r.json["close_reason"], "closed through the API");
        let reply = report(ctx, batch(vec![])).await;
        assert_eq!(reply["close"][0]["tunnel_id"], t.tunnel.as_str(), "{reply}");
        assert_eq!(reply["close"][0]["until"].as_u64(), Some(t.grant_expires_at));
        assert!(reply["close"][0]["reason"].is_string());
        // An edge of another region is not told.
        let other = ctx.call(Method::POST, "/internal/v1/reports", Some(crate::common::EDGE_SECRET),
            Some(json!({"edge_id": "edge-us", "region": "us", "live": [], "events": []}))).await;
        assert_eq!(other.json["close"], json!([]));

        let r = ctx.call(Method::POST, &format!("/v1/tunnels/{}/grant", t.tunnel), Some(&a), None).await;
        assert!(r.problem(410).contains("closed"));
        // The edge's Ended for the closed tunnel keeps the API's reason; it is not live.
        report(ctx, batch(vec![ended(&t, "s1", 1, 2, 3)])).await;
        let r = row(ctx, &a, &t.tunnel).await;
        assert_eq!(r["close_reason"], "closed through the API");
        assert_eq!(ctx.get("/v1/tunnels", Some(&a)).await.json["tunnels"], json!([]));
    }

    async fn revoking_a_token_closes_its_tunnels_and_only_those(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&a),
            Some(json!({"name": "laptop", "scopes": ["tunnel"]}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let laptop = r.json["token"].as_str().expect("token").to_string();
        let laptop_id = r.json["id"].as_str().expect("id").to_string();
        let kept = open(ctx, &a).await;
        let revoked = open(ctx, &laptop).await;
        report(ctx, batch(vec![started(&kept, "s1"), started(&revoked, "s2")])).await;

        let r = ctx.call(Method::DELETE, &format!("/v1/tokens/{laptop_id}"), Some(&a), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        let reply = report(ctx, batch(vec![])).await;
        let close = reply["close"].as_array().expect("close");
        assert_eq!(close.len(), 1, "{reply}");
        assert_eq!(close[0]["tunnel_id"], revoked.tunnel.as_str());
        assert!(close[0]["reason"].as_str().expect("reason").contains("revoked"), "{reply}");
        let r = row(ctx, &a, &revoked.tunnel).await;
        assert_eq!(r["state"], "ended", "{r}");
        assert!(r["close_reason"].as_str().expect("reason").contains("revoked"), "{r}");
        assert_eq!(row(ctx, &a, &kept.tunnel).await["state"], "live");
    }
}

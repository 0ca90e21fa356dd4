//! Token lifecycle, scopes, isolation, rate limiting of failed authentication.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;

use crate::common::api_tests;

api_tests! {
    async fn token_lifecycle(ctx: &Ctx) {
        let owner = ctx.account("owner@example.com").await;
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&owner), Some(json!({"name": "laptop", "scopes": ["read", "tunnel"]}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let token = r.json["token"].as_str().expect("token").to_string();
        let id = r.json["id"].as_str().expect("id").to_string();
        assert_eq!(id.len(), 16);
        assert!(token.starts_with(&format!("wrn_{id}_")) && token.len() >= 4 + 16 + 1 + 32);
        assert_eq!(r.json["name"], "laptop");
        assert_eq!(r.json["scopes"], json!(["read", "tunnel"]));
        assert!(r.json["expires_at"].is_null());

        let list = ctx.get("/v1/tokens", Some(&owner)).await;
        assert_eq!(list.status, 200);
        let tokens = list.json["tokens"].as_array().expect("tokens").clone();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.iter().any(|t| t["id"] == id.as_str() && t["name"] == "laptop"));
        assert!(!list.text.contains(&token), "list must not show secrets");

        assert_eq!(ctx.get("/v1/me", Some(&token)).await.status, 200);
        // A token with the right id and a wrong secret is rejected.
        let forged = format!("wrn_{id}_{}", "a".repeat(40));
        ctx.get("/v1/me", Some(&forged)).await.problem(401);

        let r = ctx.call(Method::DELETE, &format!("/v1/tokens/{id}"), Some(&owner), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert!(ctx.get("/v1/me", Some(&token)).await.problem(401).contains("revoked"));
        ctx.call(Method::DELETE, &format!("/v1/tokens/{id}"), Some(&owner), None).await.problem(404);
        let list = ctx.get("/v1/tokens", Some(&owner)).await;
        assert_eq!(list.json["tokens"].as_array().map(Vec::len), Some(1));
    }

    async fn expired_tokens_are_rejected(ctx: &Ctx) {
        let owner = ctx.account("owner@example.com").await;
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&owner), Some(json!({"expires_in_secs": 1}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert!(r.json["expires_at"].is_string());
        let token = r.json["token"].as_str().expect("token").to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = ctx.get("/v1/me", Some(&token)).await;
            if r.status == 401 {
                assert!(r.problem(401).contains("expired"));
                break;
            }
            assert_eq!(r.status, 200);
            assert!(Instant::now() < deadline, "token did not expire");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&owner), Some(json!({"expires_in_secs": 0}))).await;
        r.problem(422);
    }

    async fn scopes_limit_what_a_token_does(ctx: &Ctx) {
        let owner = ctx.account("owner@example.com").await;
        let read = ctx.token(&owner, &["read"]).await;
        let tunnel = ctx.token(&owner, &["tunnel"]).await;

        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&read), Some(json!({"protocol": "http"}))).await;
        assert!(r.problem(403).contains("tunnel scope"), "{}", r.text);
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&read), Some(json!({}))).await;
        assert!(r.problem(403).contains("manage scope"), "{}", r.text);
        assert_eq!(ctx.get("/v1/tokens", Some(&read)).await.status, 200);
        assert_eq!(ctx.get("/v1/tunnels/history", Some(&read)).await.status, 200);

        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&tunnel), Some(json!({"protocol": "http"}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.json["tunnel_id"].as_str().expect("id").to_string();
        let r = ctx.call(Method::POST, &format!("/v1/tunnels/{id}/grant"), Some(&tunnel), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ctx.call(Method::DELETE, &format!("/v1/tunnels/{id}"), Some(&tunnel), None).await.problem(403);
        ctx.call(Method::POST, "/v1/subdomains", Some(&tunnel), Some(json!({"name": "mine"}))).await.problem(403);
        ctx.call(Method::POST, "/v1/tokens", Some(&tunnel), Some(json!({}))).await.problem(403);
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&owner), Some(json!({"scopes": ["admin"]}))).await;
        r.problem(422);
    }

    async fn tokens_are_isolated_between_accounts(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let a_id = ctx.get("/v1/me", Some(&a)).await.json["token"]["id"].as_str().expect("id").to_string();
        let b_list = ctx.get("/v1/tokens", Some(&b)).await;
        assert!(!b_list.text.contains(&a_id));
        let r = ctx.call(Method::DELETE, &format!("/v1/tokens/{a_id}"), Some(&b), None).await;
        r.problem(404);
        assert_eq!(ctx.get("/v1/me", Some(&a)).await.status, 200, "A's token still works");
    }

    async fn failed_authentication_is_rate_limited(ctx: &Ctx) {
        let good = ctx.account("good@example.com").await;
        for i in 0..10 {
            let r = ctx.get("/v1/me", Some(&format!("wrn_0000000000000000_bad{i}"))).await;
            r.problem(401);
            assert_eq!(r.headers.get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
        }
        let r = ctx.get("/v1/me", Some("wrn_0000000000000000_bad")).await;
        r.problem(429);
        let retry: u64 = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
        assert!((1..=60).contains(&retry), "{retry}");
        // The limit is per client address: from there even a good token waits.
        ctx.get("/v1/me", Some(&good)).await.problem(429);
        if ctx.transport() == Transport::Oneshot {
            let r = ctx.raw(Method::GET, "/v1/me", &[("authorization", format!("Bearer {good}"))], vec![], "10.1.2.3").await;
            assert_eq!(r.status, 200, "another address is not limited: {}", r.text);
        }
    }
}

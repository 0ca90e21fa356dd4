//! `/v1/me`, `/v1/accounts` (admin only), the dev account.

use hyper::Method;
use serde_json::json;

use crate::common::api_tests;

api_tests! {
    async fn me_shows_account_and_token(ctx: &Ctx) {
        let token = ctx.account("Alice@Example.com").await;
        let r = ctx.get("/v1/me", Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["account"]["email"], "alice@example.com");
        assert_eq!(r.json["account"]["admin"], false);
        assert!(r.json["account"]["id"].as_str().is_some_and(|id| id.starts_with("acc_")));
        assert!(r.json["account"]["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(r.json["token"]["scopes"], json!(["manage"]));
        let id = r.json["token"]["id"].as_str().expect("id");
        assert!(token.starts_with(&format!("wrn_{id}_")), "{token}");
        assert!(r.json["token"]["last_used_at"].is_string());
        assert!(!r.text.contains(&token), "the token must never be echoed");
    }

    async fn accounts_are_admin_only(ctx: &Ctx) {
        let user = ctx.account("user@example.com").await;
        let r = ctx.call(Method::POST, "/v1/accounts", Some(&user), Some(json!({"email": "x@example.com"}))).await;
        assert!(r.problem(403).contains("admin"));
        ctx.get("/v1/accounts", Some(&user)).await.problem(403);

        let r = ctx.call(Method::POST, "/v1/accounts", Some(&ctx.admin), Some(json!({"email": "New@Example.com"}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["account"]["email"], "new@example.com");
        let token = r.json["token"].as_str().expect("token").to_string();
        assert_eq!(r.json["token_id"].as_str().map(|id| token.starts_with(&format!("wrn_{id}_"))), Some(true));
        let me = ctx.get("/v1/me", Some(&token)).await;
        assert_eq!(me.json["account"]["id"], r.json["account"]["id"]);

        // Emails are unique case-insensitively.
        let r = ctx.call(Method::POST, "/v1/accounts", Some(&ctx.admin), Some(json!({"email": "NEW@example.com"}))).await;
        assert!(r.problem(409).contains("already exists"));
        let r = ctx.call(Method::POST, "/v1/accounts", Some(&ctx.admin), Some(json!({"email": "not-an-email"}))).await;
        assert!(r.problem(422).contains("email"));

        let list = ctx.get("/v1/accounts", Some(&ctx.admin)).await;
        assert_eq!(list.status, 200, "{}", list.text);
        assert_eq!(list.json["accounts"].as_array().map(Vec::len), Some(3));
        ctx.get("/v1/accounts?limit=0", Some(&ctx.admin)).await.problem(422);
    }

    async fn dev_account_token_is_stable(ctx: &Ctx) {
        let first = warren_control::ensure_dev_account(&ctx.state).await.expect("dev account");
        let second = warren_control::ensure_dev_account(&ctx.state).await.expect("dev account");
        assert_eq!(first, second);
        let me = ctx.get("/v1/me", Some(&first)).await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.json["account"]["admin"], true);
    }
}

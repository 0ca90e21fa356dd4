//! Errors are problem+json everywhere; public endpoints answer without a token.

use hyper::Method;
use serde_json::json;

use crate::common::api_tests;

api_tests! {
    async fn errors_are_problem_json(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let r = ctx.get("/v1/nothing-here", Some(&a)).await;
        assert!(r.problem(404).contains("/v1/nothing-here"));
        let r = ctx.call(Method::PUT, "/v1/me", Some(&a), None).await;
        assert!(r.problem(405).contains("PUT"));
        let r = ctx.get("/v1/me", None).await;
        assert!(r.problem(401).contains("Authorization: Bearer"));
        assert_eq!(r.headers.get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));

        let auth = ("authorization", format!("Bearer {a}"));
        let json_type = ("content-type", "application/json".to_string());
        let r = ctx.raw(Method::POST, "/v1/tokens", &[auth.clone(), json_type.clone()], b"{not json".to_vec(), "127.0.0.1").await;
        r.problem(400);
        let r = ctx.raw(Method::POST, "/v1/subdomains", &[auth.clone(), json_type.clone()], br#"{"nam": "x"}"#.to_vec(), "127.0.0.1").await;
        assert!(r.problem(422).contains("nam"), "{}", r.text);
        let r = ctx.raw(Method::POST, "/v1/tokens", std::slice::from_ref(&auth), b"{}".to_vec(), "127.0.0.1").await;
        r.problem(415);
        let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(70 * 1024));
        let r = ctx.raw(Method::POST, "/v1/tokens", &[auth.clone(), json_type.clone()], big.into_bytes(), "127.0.0.1").await;
        r.problem(413);
        let r = ctx.call(Method::POST, "/v1/tokens", Some(&a), Some(json!({"name": "x".repeat(101)}))).await;
        r.problem(422);
    }

    async fn public_endpoints_answer_without_a_token(ctx: &Ctx) {
        let r = ctx.get("/v1/regions", None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["regions"][0]["id"], "eu");
        assert_eq!(r.json["regions"][0]["domain"], "eu.test.example");
        assert_eq!(r.json["regions"][1]["tunnel_url"], "wss://us.test.example");
        assert_eq!(ctx.get("/healthz", None).await.status, 200);
        let ready = ctx.get("/readyz", None).await;
        assert_eq!(ready.status, 200, "{}", ready.text);
        let spec = ctx.get("/openapi.json", None).await;
        assert_eq!(spec.status, 200);
        assert_eq!(spec.json["info"]["title"], "Warren control");
        let docs = ctx.get("/docs/", None).await;
        assert_eq!(docs.status, 200);
        assert!(docs.text.contains("swagger"), "{}", &docs.text[..docs.text.len().min(300)]);
        let jwks = ctx.get("/.well-known/jwks.json", None).await;
        assert_eq!(jwks.json["keys"].as_array().map(Vec::len), Some(1));
    }
}

//! Subdomain claims: unique across accounts, case-insensitive, reserved and invalid names.

use hyper::Method;
use serde_json::json;

use crate::common::api_tests;

api_tests! {
    async fn claims_are_unique_across_accounts(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&a), Some(json!({"name": "MyApp"}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["name"], "myapp");
        // Claiming one's own name again is fine.
        assert_eq!(ctx.call(Method::POST, "/v1/subdomains", Some(&a), Some(json!({"name": "myapp"}))).await.status, 201);

        for name in ["myapp", "MYAPP", "myApp"] {
            let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": name}))).await;
            assert!(r.problem(409).contains("claimed by another account"), "{}", r.text);
        }
        let list_a = ctx.get("/v1/subdomains", Some(&a)).await;
        assert_eq!(list_a.json["subdomains"][0]["name"], "myapp");
        let list_b = ctx.get("/v1/subdomains", Some(&b)).await;
        assert_eq!(list_b.json["subdomains"], json!([]));

        ctx.call(Method::DELETE, "/v1/subdomains/myapp", Some(&b), None).await.problem(404);
        assert_eq!(ctx.get("/v1/subdomains", Some(&a)).await.json["subdomains"].as_array().map(Vec::len), Some(1));
        let r = ctx.call(Method::DELETE, "/v1/subdomains/MyApp", Some(&a), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": "myapp"}))).await;
        assert_eq!(r.status, 201, "released names can be claimed: {}", r.text);
    }

    async fn invalid_and_reserved_names_are_refused(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        for (name, why) in [("www", "reserved"), ("a_b", "letters, digits"), ("ab", "3 to 63"), ("-abc", "hyphen")] {
            let r = ctx.call(Method::POST, "/v1/subdomains", Some(&a), Some(json!({"name": name}))).await;
            assert!(r.problem(422).contains(why), "{name}: {}", r.text);
        }
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&a), Some(json!({"name": "x".repeat(64)}))).await;
        r.problem(422);
    }
}

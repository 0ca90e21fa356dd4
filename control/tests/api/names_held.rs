//! No name changes hands behind its owner's back: a stable name is held like a claim from its
//! first grant on, a name served under a valid grant is held even without a claim, and only
//! the owner releases a name (which closes its tunnels on it).

use hyper::Method;
use serde_json::json;

use crate::common::api_tests;

api_tests! {
    async fn stable_names_are_held_like_claims(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let stable = json!({"protocol": "http", "local_addr": "localhost:3000"});
        let opened = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(stable.clone())).await;
        assert_eq!(opened.status, 201, "{}", opened.text);
        let hostname = opened.json["hostname"].as_str().expect("hostname").to_string();
        let name = hostname.split('.').next().expect("label").to_string();
        let tunnel = opened.json["tunnel_id"].as_str().expect("id").to_string();

        let listed = ctx.get("/v1/subdomains", Some(&a)).await;
        assert_eq!(listed.json["subdomains"], json!([{"name": name, "created_at": listed.json["subdomains"][0]["created_at"], "stable": true}]));

        // Another account can neither claim it nor get a grant for it, in any region.
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": name.to_uppercase()}))).await;
        assert!(r.problem(409).contains("claimed by another account"), "{}", r.text);
        for region in ["eu", "us"] {
            let r = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http", "subdomain": name, "region": region}))).await;
            assert!(r.problem(409).contains("claimed by another account"), "{}", r.text);
        }
        ctx.call(Method::DELETE, &format!("/v1/subdomains/{name}"), Some(&b), None).await.problem(404);

        // The owner keeps getting it (a reconnect, a new run) and renewing its grant.
        let again = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(stable.clone())).await;
        assert_eq!(again.json["hostname"], hostname.as_str(), "{}", again.text);
        let renewed = ctx.call(Method::POST, &format!("/v1/tunnels/{tunnel}/grant"), Some(&a), None).await;
        assert_eq!(renewed.status, 200, "{}", renewed.text);

        // Releasing is explicit, and closes the owner's tunnels on the name.
        let r = ctx.call(Method::DELETE, &format!("/v1/subdomains/{name}"), Some(&a), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        let r = ctx.call(Method::POST, &format!("/v1/tunnels/{tunnel}/grant"), Some(&a), None).await;
        r.problem(410);
        let history = ctx.get("/v1/tunnels/history", Some(&a)).await;
        for row in history.json["tunnels"].as_array().expect("rows") {
            assert_eq!(row["close_reason"], "its subdomain was released through the API (`warren subdomains release`)", "{row}");
        }
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": name}))).await;
        assert_eq!(r.status, 201, "a released name can be claimed: {}", r.text);
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(stable)).await;
        assert!(r.problem(409).contains("claimed by another account"), "{}", r.text);
    }

    async fn names_served_under_a_valid_grant_are_held(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let opened = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http", "random": true}))).await;
        assert_eq!(opened.status, 201, "{}", opened.text);
        let name = opened.json["hostname"].as_str().and_then(|h| h.split('.').next()).expect("label").to_string();
        let tunnel = opened.json["tunnel_id"].as_str().expect("id").to_string();
        // A random name is not a claim: it is held by its grant.
        assert_eq!(ctx.get("/v1/subdomains", Some(&a)).await.json["subdomains"], json!([]));
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": name}))).await;
        assert!(r.problem(409).contains("in use by another account's tunnel"), "{}", r.text);
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http", "subdomain": name, "region": "us"}))).await;
        assert!(r.problem(409).contains("in use by another account's tunnel"), "{}", r.text);
        // Its own account may still claim it.
        let own = ctx.call(Method::POST, "/v1/subdomains", Some(&a), Some(json!({"name": name}))).await;
        assert_eq!(own.status, 201, "{}", own.text);
        assert_eq!(ctx.call(Method::DELETE, &format!("/v1/subdomains/{name}"), Some(&a), None).await.status, 204);
        // Released (which closed the tunnel): free for anyone.
        ctx.call(Method::POST, &format!("/v1/tunnels/{tunnel}/grant"), Some(&a), None).await.problem(410);
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": name}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    async fn a_closed_tunnel_no_longer_holds_its_random_name(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let opened = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http", "random": true}))).await;
        let name = opened.json["hostname"].as_str().and_then(|h| h.split('.').next()).expect("label").to_string();
        let tunnel = opened.json["tunnel_id"].as_str().expect("id").to_string();
        assert_eq!(ctx.call(Method::DELETE, &format!("/v1/tunnels/{tunnel}"), Some(&a), None).await.status, 202);
        let r = ctx.call(Method::POST, "/v1/subdomains", Some(&b), Some(json!({"name": name}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

//! Custom domains: adding (validation, one account per hostname), verifying against a real DNS
//! server (`pebble-challtestsrv`), grants for verified domains only, removal closing tunnels.

use hyper::Method;
use serde_json::{Value, json};

use crate::common::{Backend, Ctx, Transport, api_tests, dns_api_tests, region, region_us};
use crate::grants::verify;

/// Adds `hostname` for `token`; returns the answer's JSON after checking it is a 201.
async fn add(ctx: &Ctx, token: &str, hostname: &str) -> Value {
    let r = ctx
        .call(
            Method::POST,
            "/v1/domains",
            Some(token),
            Some(json!({ "hostname": hostname })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json
}

async fn verify_domain(ctx: &Ctx, token: &str, domain: &str) -> crate::common::Resp {
    ctx.call(
        Method::POST,
        &format!("/v1/domains/{domain}/verify"),
        Some(token),
        None,
    )
    .await
}

async fn tunnel(ctx: &Ctx, token: &str, body: Value) -> crate::common::Resp {
    ctx.call(Method::POST, "/v1/tunnels", Some(token), Some(body))
        .await
}

api_tests! {
    async fn domains_are_added_listed_and_isolated(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let added = add(ctx, &a, "App.Example.COM").await;
        let id = added["id"].as_str().expect("id").to_string();
        assert!(id.starts_with("dom_"), "{added}");
        assert_eq!(added["hostname"], "app.example.com");
        assert_eq!(added["status"], "pending");
        assert_eq!(added["region"], "eu");
        assert_eq!(added["records"][0], json!({"type": "CNAME", "name": "app.example.com", "value": "eu.test.example"}));
        assert_eq!(added["records"][1]["type"], "TXT");
        assert_eq!(added["records"][1]["name"], "_warren-challenge.app.example.com");
        let token = added["records"][1]["value"].as_str().expect("token");
        assert_eq!(token.len(), 32, "{added}");
        assert!(added["verified_at"].is_null() && added["last_error"].is_null());
        // Adding it again (any case, trailing dot) is the same domain.
        assert_eq!(add(ctx, &a, "app.example.com.").await["id"], id.as_str());

        for hostname in ["app.example.com", "APP.example.com"] {
            let r = ctx.call(Method::POST, "/v1/domains", Some(&b), Some(json!({"hostname": hostname}))).await;
            assert!(r.problem(409).contains("added by another account"), "{}", r.text);
        }
        assert_eq!(ctx.get("/v1/domains", Some(&b)).await.json["domains"], json!([]));
        for path in [format!("/v1/domains/{id}"), "/v1/domains/app.example.com".to_string()] {
            ctx.get(&path, Some(&b)).await.problem(404);
            ctx.call(Method::DELETE, &path, Some(&b), None).await.problem(404);
            let r = ctx.get(&path, Some(&a)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json["id"], id.as_str());
        }
        verify_domain(ctx, &b, &id).await.problem(404);
        let r = tunnel(ctx, &b, json!({"protocol": "http", "domain": "app.example.com"})).await;
        assert!(r.problem(404).contains("not one of this account's domains"), "{}", r.text);

        let us = ctx.call(Method::POST, "/v1/domains", Some(&a), Some(json!({"hostname": "api.example.org", "region": "us"}))).await;
        assert_eq!(us.status, 201, "{}", us.text);
        assert_eq!(us.json["records"][0]["value"], "us.test.example");
        assert_ne!(us.json["records"][1]["value"], token, "every domain has its own token");
        let r = ctx.call(Method::POST, "/v1/domains", Some(&a), Some(json!({"hostname": "x.example.org", "region": "mars"}))).await;
        assert!(r.problem(404).contains("unknown region"), "{}", r.text);
        let list = ctx.get("/v1/domains", Some(&a)).await;
        let names: Vec<&str> = list.json["domains"].as_array().expect("list").iter().filter_map(|d| d["hostname"].as_str()).collect();
        assert_eq!(names, ["api.example.org", "app.example.com"]);

        let read = ctx.token(&a, &["read"]).await;
        assert_eq!(ctx.get("/v1/domains", Some(&read)).await.json["domains"].as_array().map(Vec::len), Some(2));
        let r = ctx.call(Method::POST, "/v1/domains", Some(&read), Some(json!({"hostname": "c.example.com"}))).await;
        assert!(r.problem(403).contains("manage scope"), "{}", r.text);
        verify_domain(ctx, &read, &id).await.problem(403);
        ctx.call(Method::DELETE, &format!("/v1/domains/{id}"), Some(&read), None).await.problem(403);

        let r = ctx.call(Method::DELETE, "/v1/domains/APP.example.com", Some(&a), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        ctx.get(&format!("/v1/domains/{id}"), Some(&a)).await.problem(404);
        let again = add(ctx, &b, "app.example.com").await;
        assert_ne!(again["id"], id.as_str(), "a removed hostname can be added by anyone");
    }

    async fn unverified_domains_expire_for_other_accounts(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        add(ctx, &a, "squat.example.com").await;
        let r = ctx.call(Method::POST, "/v1/domains", Some(&b), Some(json!({"hostname": "squat.example.com"}))).await;
        r.problem(409);
        // Three days later (moved back in time here), the unproven claim no longer blocks.
        sqlx::query("UPDATE domains SET created_at = created_at - 259300000")
            .execute(&ctx.state.db().pool)
            .await
            .expect("age the domain");
        let taken_over = add(ctx, &b, "squat.example.com").await;
        assert_eq!(taken_over["status"], "pending");
        assert_eq!(ctx.get("/v1/domains", Some(&a)).await.json["domains"], json!([]));
    }

    async fn invalid_hostnames_are_refused(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let long_label = format!("{}.example.com", "x".repeat(64));
        let long_name = format!("{}example.com", "abcdefghi.".repeat(25));
        for (hostname, why) in [
            ("10.0.0.1", "IP address"),
            ("[::1]", "IP address"),
            ("localhost", "fully qualified"),
            ("app", "fully qualified"),
            ("*.example.com", "no wildcard"),
            ("a..example.com", "empty label"),
            ("-a.example.com", "hyphen"),
            ("a_b.example.com", "only letters"),
            ("bücher.example", "punycode"),
            ("demo.eu.test.example", "a domain of this Warren"),
            ("EU.test.example", "a domain of this Warren"),
            ("a.b.us.test.example", "a domain of this Warren"),
            ("", "empty"),
            (long_label.as_str(), "63"),
            (long_name.as_str(), "253"),
        ] {
            let r = ctx.call(Method::POST, "/v1/domains", Some(&a), Some(json!({"hostname": hostname}))).await;
            assert!(r.problem(422).contains(why), "{hostname}: {}", r.text);
        }
        let r = ctx.call(Method::POST, "/v1/domains", Some(&a), Some(json!({"hostname": "a.example.com", "cname": "x"}))).await;
        r.problem(422);
        let r = ctx.call(Method::POST, "/v1/domains", Some(&a), Some(json!({"hostname": 7}))).await;
        r.problem(422);
        assert_eq!(ctx.get("/v1/domains", Some(&a)).await.json["domains"], json!([]));
        // The grant side parses the same way.
        let r = tunnel(ctx, &a, json!({"protocol": "http", "domain": "10.0.0.1"})).await;
        assert!(r.problem(422).contains("IP address"), "{}", r.text);
    }
}

dns_api_tests! {
    async fn verification_needs_both_records_then_grants_follow(ctx: &Ctx, dns: &ChallTestSrv) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let added = add(ctx, &a, "app.example.com").await;
        let id = added["id"].as_str().expect("id").to_string();
        let token = added["records"][1]["value"].as_str().expect("token").to_string();
        let txt = "_warren-challenge.app.example.com";

        // Nothing in DNS yet: both records are named, with what to create.
        let detail = verify_domain(ctx, &a, "app.example.com").await.problem(409);
        assert!(detail.contains(&format!("there is no TXT record at {txt}; create it with the value \"{token}\"")), "{detail}");
        assert!(detail.contains("there is no CNAME record at app.example.com; create app.example.com CNAME eu.test.example"), "{detail}");
        assert!(detail.contains(&format!("the DNS resolver at {}", dns.dns)), "{detail}");
        let shown = ctx.get(&format!("/v1/domains/{id}"), Some(&a)).await;
        assert_eq!(shown.json["status"], "pending");
        assert_eq!(shown.json["last_error"], detail.as_str());
        assert!(shown.json["last_check_at"].is_string(), "{}", shown.text);
        // An unverified domain never gets a grant (so no edge ever serves it or orders a
        // certificate for it).
        let r = tunnel(ctx, &a, json!({"protocol": "http", "domain": "app.example.com"})).await;
        assert!(r.problem(403).contains("app.example.com is not verified yet"), "{}", r.text);

        // A wrong TXT value is quoted back.
        dns.set_txt(txt, "not-the-token").await.expect("set TXT");
        let detail = verify_domain(ctx, &a, &id).await.problem(409);
        assert!(detail.contains(&format!("the TXT record at {txt} holds \"not-the-token\", not \"{token}\"")), "{detail}");
        dns.clear_txt(txt).await.expect("clear TXT");
        dns.set_txt(txt, &token).await.expect("set TXT");
        let detail = verify_domain(ctx, &a, &id).await.problem(409);
        assert!(!detail.contains("TXT"), "the TXT record is right now: {detail}");
        assert!(detail.contains("there is no CNAME record at app.example.com"), "{detail}");

        dns.set_cname("app.example.com", "elsewhere.example.net").await.expect("set CNAME");
        let detail = verify_domain(ctx, &a, &id).await.problem(409);
        assert!(detail.contains("app.example.com is a CNAME for \"elsewhere.example.net\", not for eu.test.example"), "{detail}");
        dns.clear_cname("app.example.com").await.expect("clear CNAME");
        dns.set_cname("app.example.com", "EU.test.example").await.expect("set CNAME");
        let r = verify_domain(ctx, &a, &id).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["status"], "verified");
        assert!(r.json["verified_at"].is_string() && r.json["last_error"].is_null(), "{}", r.text);
        // Verified stays verified; the other account still cannot use or see it.
        assert_eq!(verify_domain(ctx, &a, "app.example.com").await.status, 200);
        verify_domain(ctx, &b, &id).await.problem(404);
        let r = tunnel(ctx, &b, json!({"protocol": "http", "domain": "app.example.com"})).await;
        r.problem(404);

        let granted = tunnel(ctx, &a, json!({"protocol": "http", "domain": "App.Example.com"})).await;
        assert_eq!(granted.status, 201, "{}", granted.text);
        assert_eq!(granted.json["hostname"], "app.example.com");
        assert_eq!(granted.json["public_url"], "http://app.example.com:8080");
        assert_eq!(granted.json["region"], "eu");
        assert_eq!(granted.json["custom_domain"], true);
        let (_, claims) = verify(ctx, granted.json["grant"].as_str().expect("grant")).await;
        assert_eq!(claims.hostname, "app.example.com");
        assert!(claims.custom_domain);
        let tunnel_id = granted.json["tunnel_id"].as_str().expect("id").to_string();
        let renewed = ctx.call(Method::POST, &format!("/v1/tunnels/{tunnel_id}/grant"), Some(&a), None).await;
        assert_eq!(renewed.status, 200, "{}", renewed.text);
        let (_, again) = verify(ctx, renewed.json["grant"].as_str().expect("grant")).await;
        assert!(again.custom_domain && again.hostname == "app.example.com");
        // Subdomain grants are not marked.
        let plain = tunnel(ctx, &a, json!({"protocol": "http", "subdomain": "plain"})).await;
        assert_eq!(plain.json["custom_domain"], false);
        let (_, plain) = verify(ctx, plain.json["grant"].as_str().expect("grant")).await;
        assert!(!plain.custom_domain);
        let r = tunnel(ctx, &a, json!({"protocol": "http", "domain": "app.example.com", "subdomain": "x"})).await;
        assert!(r.problem(422).contains("either subdomain or domain"), "{}", r.text);
        let us = tunnel(ctx, &a, json!({"protocol": "http", "domain": "app.example.com", "region": "us"})).await;
        assert_eq!(us.status, 201, "{}", us.text);
        assert_eq!(us.json["region"], "us");

        // Removing the domain closes its tunnels: edges refuse their grants, renewal is gone.
        let r = ctx.call(Method::DELETE, &format!("/v1/domains/{id}"), Some(&a), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        let now = warren_control::store::now_ms() / 1000;
        let closed = ctx.state.db().closed_tunnels("eu", now).await.expect("closed tunnels");
        let (_, _, reason) = closed.iter().find(|(id, _, _)| *id == tunnel_id).expect("the tunnel is closed");
        assert_eq!(reason, "its custom domain was removed through the API");
        let renewed = ctx.call(Method::POST, &format!("/v1/tunnels/{tunnel_id}/grant"), Some(&a), None).await;
        renewed.problem(410);
        let r = tunnel(ctx, &a, json!({"protocol": "http", "domain": "app.example.com"})).await;
        r.problem(404);
    }
}

/// A resolver that does not answer is a 503 that names it, and the domain stays pending.
#[tokio::test]
async fn an_unreachable_resolver_is_a_clear_503() {
    // A UDP and TCP port nobody listens on.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    drop(socket);
    let resolver = warren_control::dns::DnsResolver::At(addr);
    let ctx = Ctx::with_config(
        Backend::Sqlite,
        Transport::Oneshot,
        vec![region(), region_us()],
        |c| c.dns_resolver = resolver,
    )
    .await;
    let a = ctx.account("a@example.com").await;
    add(&ctx, &a, "app.example.com").await;
    let started = std::time::Instant::now();
    let detail = verify_domain(&ctx, &a, "app.example.com")
        .await
        .problem(503);
    assert!(
        detail.contains(&format!("the DNS resolver at {addr}")),
        "{detail}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "bounded by the query timeout"
    );
    let shown = ctx.get("/v1/domains/app.example.com", Some(&a)).await;
    assert_eq!(shown.json["status"], "pending");
    assert_eq!(shown.json["last_error"], detail.as_str());
    ctx.finish().await;
}

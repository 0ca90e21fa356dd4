//! `POST /v1/tunnels` and renewal: names, claims, signed grants, JWKS, key rotation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use hyper::Method;
use serde_json::{Value, json};
use warren_proto::grant::GrantClaims;

use crate::common::{Ctx, api_tests};

/// Verifies `jwt` against the JWKS control publishes; returns its header and claims.
pub async fn verify(ctx: &Ctx, jwt: &str) -> (Value, GrantClaims) {
    let jwks = ctx.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200, "{}", jwks.text);
    let mut parts = jwt.split('.');
    let (h, c, s) = (
        parts.next().expect("header"),
        parts.next().expect("claims"),
        parts.next().expect("sig"),
    );
    assert!(parts.next().is_none());
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "JWT");
    let kid = header["kid"].as_str().expect("kid present");
    let key = jwks.json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("kid in JWKS")
        .clone();
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().expect("x"))
        .expect("b64")
        .try_into()
        .expect("32 bytes");
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(s)
        .expect("b64")
        .try_into()
        .expect("64 bytes");
    VerifyingKey::from_bytes(&x)
        .expect("key")
        .verify(format!("{h}.{c}").as_bytes(), &Signature::from_bytes(&sig))
        .expect("grant signature verifies with the JWKS key");
    let claims: GrantClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).expect("b64")).expect("claims");
    (header, claims)
}

api_tests! {
    async fn grants_are_signed_and_renewable(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let me = ctx.get("/v1/me", Some(&a)).await;
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http", "subdomain": "Demo"}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["hostname"], "demo.eu.test.example");
        assert_eq!(r.json["public_url"], "http://demo.eu.test.example:8080");
        assert_eq!(r.json["region"], "eu");
        assert_eq!(r.json["edge_url"], "ws://127.0.0.1:9/tunnel");
        let tunnel_id = r.json["tunnel_id"].as_str().expect("id").to_string();
        let (_, claims) = verify(ctx, r.json["grant"].as_str().expect("grant")).await;
        assert_eq!(claims.iss, "warren-control");
        assert_eq!(claims.aud, "warren-edge");
        assert_eq!(claims.sub, me.json["account"]["id"].as_str().expect("id"));
        assert_eq!(claims.token_id, me.json["token"]["id"].as_str().expect("id"));
        assert_eq!(claims.tunnel_id, tunnel_id);
        assert_eq!(claims.hostname, "demo.eu.test.example");
        assert_eq!(claims.region, "eu");
        assert_eq!(claims.exp, r.json["grant_expires_at"].as_u64().expect("exp"));
        assert!(claims.exp >= claims.iat + 3500);
        // The name is now claimed for the account.
        assert_eq!(ctx.get("/v1/subdomains", Some(&a)).await.json["subdomains"][0]["name"], "demo");

        let renewed = ctx.call(Method::POST, &format!("/v1/tunnels/{tunnel_id}/grant"), Some(&a), None).await;
        assert_eq!(renewed.status, 200, "{}", renewed.text);
        assert_eq!(renewed.json["tunnel_id"], tunnel_id.as_str());
        assert_eq!(renewed.json["hostname"], "demo.eu.test.example");
        let (_, again) = verify(ctx, renewed.json["grant"].as_str().expect("grant")).await;
        assert_eq!(again.tunnel_id, tunnel_id);
        assert_ne!(again.jti, claims.jti);

        let us = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http", "subdomain": "demo", "region": "us"}))).await;
        assert_eq!(us.status, 201, "{}", us.text);
        assert_eq!(us.json["public_url"], "https://demo.us.test.example");
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http", "region": "mars"}))).await;
        assert!(r.problem(404).contains("unknown region"));
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "tcp"}))).await;
        r.problem(422);
    }

    async fn claimed_names_and_default_names(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        assert_eq!(ctx.call(Method::POST, "/v1/subdomains", Some(&a), Some(json!({"name": "taken"}))).await.status, 201);
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http", "subdomain": "TAKEN"}))).await;
        let detail = r.problem(409);
        assert!(detail.contains("taken is claimed by another account"), "{detail}");
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http", "subdomain": "www"}))).await;
        r.problem(422);

        let stable = |addr: &str| json!({"protocol": "http", "local_addr": addr});
        let one = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(stable("localhost:3000"))).await;
        let two = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(stable("localhost:3000"))).await;
        let other = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(stable("localhost:3001"))).await;
        assert_eq!(one.status, 201, "{}", one.text);
        assert_eq!(one.json["hostname"], two.json["hostname"], "same token + address → same name");
        assert_ne!(one.json["hostname"], other.json["hostname"]);
        assert_ne!(one.json["tunnel_id"], two.json["tunnel_id"]);
        let r1 = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http", "random": true}))).await;
        let r2 = ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http", "random": true}))).await;
        assert_eq!(r1.status, 201, "{}", r1.text);
        assert_ne!(r1.json["hostname"], r2.json["hostname"]);
        assert_ne!(r1.json["hostname"], one.json["hostname"]);
    }

    async fn tunnels_are_isolated_between_accounts(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let r = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http"}))).await;
        let id = r.json["tunnel_id"].as_str().expect("id").to_string();
        ctx.call(Method::POST, &format!("/v1/tunnels/{id}/grant"), Some(&b), None).await.problem(404);
        ctx.call(Method::DELETE, &format!("/v1/tunnels/{id}"), Some(&b), None).await.problem(404);
        let history = ctx.get("/v1/tunnels/history", Some(&b)).await;
        assert_eq!(history.json["tunnels"], json!([]));
        let history = ctx.get("/v1/tunnels/history", Some(&a)).await;
        assert_eq!(history.json["tunnels"][0]["id"], id.as_str());
        assert_eq!(history.json["tunnels"][0]["state"], "pending");
        // B's attempt to close changed nothing.
        let renewed = ctx.call(Method::POST, &format!("/v1/tunnels/{id}/grant"), Some(&a), None).await;
        assert_eq!(renewed.status, 200, "{}", renewed.text);
    }

    async fn key_rotation_publishes_two_keys(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let before = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http"}))).await;
        let (old_header, _) = verify(ctx, before.json["grant"].as_str().expect("grant")).await;
        let kid = warren_control::rotate_key(&ctx.state).await.expect("rotate");
        let jwks = ctx.get("/.well-known/jwks.json", None).await;
        let kids: Vec<&str> = jwks.json["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
        assert_eq!(kids.len(), 2, "{}", jwks.text);
        assert!(kids.contains(&kid.as_str()) && kids.contains(&old_header["kid"].as_str().expect("kid")));
        let after = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http"}))).await;
        let (new_header, _) = verify(ctx, after.json["grant"].as_str().expect("grant")).await;
        assert_eq!(new_header["kid"], kid.as_str());
        // Grants signed with the old key still verify.
        verify(ctx, before.json["grant"].as_str().expect("grant")).await;
    }
}

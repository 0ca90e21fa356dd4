//! `GET /v1/tunnels/history`: newest first, cursor pagination, filters, isolation.

use hyper::Method;
use serde_json::json;

use crate::common::api_tests;

api_tests! {
    async fn history_pages_newest_first(ctx: &Ctx) {
        let a = ctx.account("a@example.com").await;
        let b = ctx.account("b@example.com").await;
        let mut ids = vec![];
        for i in 0..5 {
            let region = if i == 2 { "us" } else { "eu" };
            let r = ctx.call(Method::POST, "/v1/tunnels", Some(&a), Some(json!({"protocol": "http", "region": region, "local_addr": format!("localhost:{i}")}))).await;
            assert_eq!(r.status, 201, "{}", r.text);
            ids.push(r.json["tunnel_id"].as_str().expect("id").to_string());
        }
        ctx.call(Method::POST, "/v1/tunnels", Some(&b), Some(json!({"protocol": "http"}))).await;

        let mut seen = vec![];
        let mut created = vec![];
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let path = match &cursor {
                Some(c) => format!("/v1/tunnels/history?limit=2&cursor={c}"),
                None => "/v1/tunnels/history?limit=2".to_string(),
            };
            let page = ctx.get(&path, Some(&a)).await;
            assert_eq!(page.status, 200, "{}", page.text);
            for t in page.json["tunnels"].as_array().expect("tunnels") {
                seen.push(t["id"].as_str().expect("id").to_string());
                created.push(t["created_at"].as_str().expect("at").to_string());
            }
            match page.json["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "no tunnel twice");
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(sorted, expected, "only A's tunnels");
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");
        // Created one after another, the last one is first.
        assert_eq!(seen[0], ids[4]);

        let us = ctx.get("/v1/tunnels/history?region=us", Some(&a)).await;
        assert_eq!(us.json["tunnels"].as_array().map(Vec::len), Some(1));
        assert_eq!(us.json["tunnels"][0]["id"], ids[2].as_str());
        assert!(us.json["next_cursor"].is_null());
        let http = ctx.get("/v1/tunnels/history?protocol=http&limit=200", Some(&a)).await;
        assert_eq!(http.json["tunnels"].as_array().map(Vec::len), Some(5));
        let none = ctx.get("/v1/tunnels/history?protocol=tcp", Some(&a)).await;
        assert_eq!(none.json["tunnels"], json!([]));

        for bad in ["limit=0", "limit=201", "limit=-1"] {
            ctx.get(&format!("/v1/tunnels/history?{bad}"), Some(&a)).await.problem(422);
        }
        ctx.get("/v1/tunnels/history?limit=abc", Some(&a)).await.problem(400);
        let r = ctx.get("/v1/tunnels/history?cursor=garbage", Some(&a)).await;
        assert!(r.problem(400).contains("cursor"));
    }
}

//! One conformance suite for every route table: the in-process one, Redis, and Redis Cluster
//! (real servers on free loopback ports). The edge relies on exactly these semantics.

use std::sync::Arc;
use std::time::{Duration, Instant};
use warren_edge::routes::{
    Claimed, MemoryRouteTable, RedisRouteTable, Route, RouteError, RouteTable,
    redis::RedisConnection,
};
use warren_testkit::redis::{RedisCluster, RedisServer};

const LEASE: Duration = Duration::from_millis(600);

fn route(account: &str, session: &str) -> Route {
    Route {
        edge_id: "e_1".into(),
        session_id: session.into(),
        tunnel_id: 1,
        account_id: account.into(),
        region: "eu".into(),
    }
}

/// Keeps the servers alive as long as the table.
struct Backend {
    table: Arc<dyn RouteTable>,
    _single: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

async fn memory() -> Backend {
    Backend {
        table: Arc::new(MemoryRouteTable::with_lease(LEASE)),
        _single: None,
        _cluster: None,
    }
}

async fn redis() -> Backend {
    let server = RedisServer::start().expect("redis-server starts");
    let connection = RedisConnection::connect(&server.url())
        .await
        .expect("connects");
    Backend {
        table: Arc::new(RedisRouteTable::new(connection, LEASE)),
        _single: Some(server),
        _cluster: None,
    }
}

async fn redis_cluster() -> Backend {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .expect("joins")
        .expect("Redis Cluster starts");
    let connection = RedisConnection::connect(&cluster.url())
        .await
        .expect("connects");
    Backend {
        table: Arc::new(RedisRouteTable::new(connection, LEASE)),
        _single: None,
        _cluster: Some(cluster),
    }
}

async fn claims_lookups_and_releases(table: &dyn RouteTable) {
    let host = "demo.eu.example.net";
    assert_eq!(table.lookup(host).await, Ok(None));
    assert_eq!(table.claim(host, &route("a", "s1")).await, Ok(Claimed::New));
    assert_eq!(table.lookup(host).await, Ok(Some(route("a", "s1"))));
    // The same session claiming again is not a takeover.
    assert_eq!(table.claim(host, &route("a", "s1")).await, Ok(Claimed::New));
    assert_eq!(table.release(host, "s1").await, Ok(true));
    assert_eq!(table.lookup(host).await, Ok(None));
    assert_eq!(table.release(host, "s1").await, Ok(false));
}

async fn another_account_is_refused(table: &dyn RouteTable) {
    let host = "taken.eu.example.net";
    table.claim(host, &route("a", "s1")).await.expect("claims");
    assert_eq!(
        table.claim(host, &route("b", "s2")).await,
        Err(RouteError::Taken { host: host.into() })
    );
    assert_eq!(table.lookup(host).await, Ok(Some(route("a", "s1"))));
}

async fn same_account_takes_over_and_stale_release_is_ignored(table: &dyn RouteTable) {
    let host = "moved.eu.example.net";
    table.claim(host, &route("a", "old")).await.expect("claims");
    assert_eq!(
        table.claim(host, &route("a", "new")).await,
        Ok(Claimed::TookOver(route("a", "old")))
    );
    // The old session ending must not remove (or extend) its successor's route.
    assert_eq!(table.release(host, "old").await, Ok(false));
    assert_eq!(table.renew(host, "old").await, Ok(false));
    assert_eq!(table.lookup(host).await, Ok(Some(route("a", "new"))));
}

async fn leases_expire_unless_renewed(table: &dyn RouteTable) {
    let kept = "kept.eu.example.net";
    let lost = "lost.eu.example.net";
    table.claim(kept, &route("a", "s1")).await.expect("claims");
    table.claim(lost, &route("a", "s2")).await.expect("claims");
    let deadline = Instant::now() + LEASE * 2;
    while Instant::now() < deadline {
        assert_eq!(table.renew(kept, "s1").await, Ok(true));
        tokio::time::sleep(LEASE / 6).await;
    }
    assert_eq!(table.lookup(kept).await, Ok(Some(route("a", "s1"))));
    assert_eq!(
        table.lookup(lost).await,
        Ok(None),
        "unrenewed lease expired"
    );
    assert_eq!(table.renew(lost, "s2").await, Ok(false));
    // An expired route is free for anyone.
    assert_eq!(table.claim(lost, &route("b", "s3")).await, Ok(Claimed::New));
}

async fn concurrent_claims_have_one_winner(table: Arc<dyn RouteTable>) {
    let host = "race.eu.example.net";
    let mut tasks = Vec::new();
    for i in 0..16 {
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            table
                .claim(host, &route(&format!("acct{i}"), &format!("s{i}")))
                .await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("joins") {
            Ok(Claimed::New) => winners += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(RouteError::Taken { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(winners, 1, "exactly one account wins a contested name");
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {

            #[tokio::test]
            async fn claims_lookups_and_releases() {
                let b = super::$backend().await;
                super::claims_lookups_and_releases(b.table.as_ref()).await;
            }

            #[tokio::test]
            async fn another_account_is_refused() {
                let b = super::$backend().await;
                super::another_account_is_refused(b.table.as_ref()).await;
            }

            #[tokio::test]
            async fn same_account_takes_over_and_stale_release_is_ignored() {
                let b = super::$backend().await;
                super::same_account_takes_over_and_stale_release_is_ignored(b.table.as_ref()).await;
            }

            #[tokio::test]
            async fn leases_expire_unless_renewed() {
                let b = super::$backend().await;
                super::leases_expire_unless_renewed(b.table.as_ref()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claims_have_one_winner() {
                let b = super::$backend().await;
                super::concurrent_claims_have_one_winner(b.table.clone()).await;
            }
        }
    };
}

conformance!(memory);
conformance!(redis);
conformance!(redis_cluster);

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds")
        .local_addr()
        .expect("has an address")
        .port();
    let error = match RedisConnection::connect(&format!("redis://127.0.0.1:{port}")).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("nothing listens there"),
    };
    assert!(error.contains("cannot connect to Redis"), "{error}");
}

//! Request logs (the lines `warren http` prints): one per request, in batches for agents that
//! read batches, one message each for agents that do not, none for agents that asked for none.

mod support;

use http::StatusCode;
use std::collections::HashSet;
use std::time::Duration;
use support::{Agent, Edge, FakeControl, Key, claims, hello, visit_addr};
use warren_proto::control::{Credential, Event, MAX_REQUEST_LOGS_PER_EVENT, RequestLog};
use warren_session::SessionEvent as MuxEvent;

async fn agent(edge: &Edge, key: &Key, request_log: bool, batches: bool) -> Agent {
    let mut hello = hello(
        Credential::Grant(key.sign(&claims("demo"))),
        &[Some("demo")],
    );
    hello.request_log = request_log;
    hello.request_log_batches = batches;
    Agent::connect(edge, hello).await.expect("grant accepted")
}

/// `n` requests, `concurrency` at a time; every one must succeed.
async fn visits(edge: &Edge, n: usize, concurrency: usize) {
    let mut left = n;
    while left > 0 {
        let wave = left.min(concurrency);
        let mut tasks = Vec::new();
        for _ in 0..wave {
            let addr = edge.addr;
            tasks.push(tokio::spawn(async move {
                visit_addr(addr, "demo.localhost", "GET", b"").await.0
            }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("visit"), StatusCode::OK);
        }
        left -= wave;
    }
}

/// Log messages received until `entries` logs have arrived (or 5 s passed): (messages, logs).
async fn collect(agent: &mut Agent, entries: usize) -> (usize, Vec<RequestLog>) {
    let mut messages = 0;
    let mut logs = Vec::new();
    while logs.len() < entries {
        let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(5), agent.events.recv()).await
        else {
            break;
        };
        match event {
            MuxEvent::Message(Event::RequestLog(log)) => {
                messages += 1;
                logs.push(log);
            }
            MuxEvent::Message(Event::RequestLogs { entries }) => {
                messages += 1;
                assert!(!entries.is_empty(), "an empty batch is never sent");
                assert!(entries.len() <= MAX_REQUEST_LOGS_PER_EVENT);
                logs.extend(entries);
            }
            _ => {}
        }
    }
    (messages, logs)
}

fn check(logs: &[RequestLog], n: usize) {
    assert_eq!(logs.len(), n, "one log per request");
    let ids: HashSet<&str> = logs.iter().map(|l| l.request_id.as_str()).collect();
    assert_eq!(ids.len(), n, "every request logged once");
    for log in logs {
        assert_eq!(
            (log.method.as_str(), log.path.as_str(), log.status),
            ("GET", "/path", 200)
        );
        assert_eq!(log.bytes_out, 16);
        assert!(log.error.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_concurrent_requests_arrive_in_batches() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let mut agent = agent(&edge, &key, true, true).await;

    let n = 400;
    visits(&edge, n, 50).await;
    let (messages, logs) = collect(&mut agent, n).await;
    check(&logs, n);
    assert!(
        messages < n / 2,
        "{messages} messages for {n} logs: they should share messages"
    );

    // Idle, a single request is still logged promptly.
    let started = std::time::Instant::now();
    visits(&edge, 1, 1).await;
    let (_, logs) = collect(&mut agent, 1).await;
    check(&logs, 1);
    assert!(started.elapsed() < Duration::from_secs(1));
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_without_batches_get_one_message_per_request() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let mut agent = agent(&edge, &key, true, false).await;

    let n = 60;
    visits(&edge, n, 20).await;
    let (messages, logs) = collect(&mut agent, n).await;
    check(&logs, n);
    assert_eq!(messages, n, "an agent that reads no batches gets no batch");
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_want_no_logs_get_none() {
    let key = Key::new("k1");
    let control = FakeControl::start(vec![key.jwk()]).await;
    let edge = Edge::start(&control).await;
    let mut agent = agent(&edge, &key, false, true).await;

    visits(&edge, 20, 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(event) = agent.events.try_recv() {
        assert!(
            !matches!(
                event,
                MuxEvent::Message(Event::RequestLog(_) | Event::RequestLogs { .. })
            ),
            "no request log was asked for: {event:?}"
        );
    }
    edge.stop().await;
}

//! WebSocket echo load: `conns` WebSockets to the origin's `/ws`, each sending a small binary
//! message and waiting for its echo, as fast as it can (closed loop).

use crate::load::{Outcome, histogram};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub async fn echo(
    addr: SocketAddr,
    host: &str,
    conns: usize,
    size: usize,
    duration: Duration,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let host = host.to_string();
            tokio::spawn(async move { one(addr, &host, size, deadline).await })
        })
        .collect();
    let mut total = Outcome {
        requests: 0,
        errors: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        hist: histogram(),
        first_error: None,
    };
    for t in tasks {
        let (n, hist, err) = match t.await {
            Ok(Ok(r)) => (r.0, r.1, None),
            Ok(Err(e)) => (0, histogram(), Some(e)),
            Err(e) => (0, histogram(), Some(e.to_string())),
        };
        total.requests += n;
        total.bytes += n * size as u64;
        let _ = total.hist.add(&hist);
        if let Some(e) = err {
            total.errors += 1;
            total.first_error.get_or_insert(e);
        }
    }
    total.elapsed = start.elapsed();
    total
}

async fn one(
    addr: SocketAddr,
    host: &str,
    size: usize,
    deadline: Instant,
) -> Result<(u64, hdrhistogram::Histogram<u64>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let request = format!("ws://{host}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let mut hist = histogram();
    let mut n = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        ws.send(Message::Binary(payload.clone()))
            .await
            .map_err(|e| format!("send: {e}"))?;
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == size => {}
            other => return Err(format!("unexpected echo: {other:?}")),
        }
        let _ = hist.record((t.elapsed().as_micros() as u64).max(1));
        n += 1;
    }
    let _ = ws.close(None).await;
    Ok((n, hist))
}

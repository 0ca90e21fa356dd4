//! The HTTP/1.1 proxy core: a visitor connection whose requests go to tunnels served on this
//! edge is proxied here without a general-purpose HTTP stack. The request head is parsed
//! once, rewritten in one pass (hop-by-hop fields out, forwarding fields in) and written to a
//! tunnel stream; the response head comes back the same way; bodies stream through with
//! their framing checked. hyper parsed and re-serialised every head twice (visitor side and
//! tunnel side) and kept a case map per message: most of the edge's CPU per small request.
//!
//! - `mod.rs` (here): the visitor connection: read a head, route it, proxy it, repeat;
//!   anything else goes to the general path (`visitor/serve.rs`, hyper) for the rest of the
//!   connection, with the bytes already read replayed (`rewind.rs`).
//! - `head.rs`: parsing, checking and rewriting request and response heads.
//! - `exchange.rs`: one request through a tunnel stream and its response back.
//! - `framing.rs`: body lengths and the chunked coding.

pub mod checkout;
pub mod exchange;
pub mod framing;
pub mod head;
pub mod request_body;
pub mod response_body;
pub mod strict;
#[cfg(test)]
pub(crate) mod testing;

use crate::config::DEFAULT_MAX_HEADERS;
use crate::forwarding::Forwarding;
use crate::host::{self, Target};
use crate::tunnel::LiveTunnel;
use crate::visitor::Visitors;
use crate::visitor::dispatch::Listener;
use crate::visitor::forward::RequestLogger;
use crate::visitor::serve::Conn;
use bytes::BytesMut;
use head::{Fallback, RequestFacts};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};

/// Read size for visitor connections.
const READ_SIZE: usize = 16 * 1024;

/// A visitor's connection as the core holds it: the socket and what was read but not used.
pub struct Visitor<S> {
    pub io: S,
    pub buf: BytesMut,
    pub peer: SocketAddr,
    /// Whether `peer` is a trusted proxy (`--trusted-proxy`).
    pub trusted: bool,
    /// `http` or `https` (sent as `X-Forwarded-Proto`).
    pub proto: &'static str,
    /// Reused for every response head written to the visitor.
    pub out: BytesMut,
    /// Reused for the request heads written to the local service, when the last one's
    /// stream let go of it.
    pub spare_head: BytesMut,
}

/// A request ready to go down a tunnel.
pub(crate) struct Prepared {
    pub tunnel: Arc<LiveTunnel>,
    pub facts: RequestFacts,
    /// The head the local service gets.
    pub head: BytesMut,
    pub request_id: String,
    pub log: Option<RequestLogger>,
}

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    /// Close gracefully: half-close, then read for a moment what the visitor may still send
    /// (so its unread bytes do not turn the close into a reset that destroys the response).
    Linger,
    /// Close at once: the visitor asked for it and sent nothing after its request.
    CloseNow,
}

/// Serves a visitor connection, proxying what it can and handing the rest to hyper.
pub async fn serve<S>(visitors: Arc<Visitors>, io: S, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut visitor = Visitor {
        io,
        buf: BytesMut::with_capacity(READ_SIZE),
        peer: conn.peer,
        trusted: visitors.trusted.trusts(conn.peer.ip()),
        proto: if conn.listener == Listener::Tls {
            "https"
        } else {
            "http"
        },
        out: BytesMut::new(),
        spare_head: BytesMut::new(),
    };
    loop {
        let prepared = match next_request(&visitors, &mut visitor).await {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return,
            Err(Fallback(why)) => {
                tracing::trace!(visitor = %conn.peer, why, "connection handed to the general path");
                let Visitor { io, buf, .. } = visitor;
                let io = crate::visitor::rewind::Rewind::new(buf.freeze(), io);
                return crate::visitor::serve::serve(visitors, io, conn).await;
            }
        };
        match exchange::run(&visitors, &mut visitor, prepared).await {
            Next::KeepAlive if !visitors.life.draining.is_cancelled() => {}
            Next::CloseNow => {
                exchange::close_now(&mut visitor).await;
                return;
            }
            _ => {
                exchange::close(&mut visitor).await;
                return;
            }
        }
    }
}

/// Reads until a whole request head is buffered and routed. `Ok(None)`: the visitor left,
/// stayed idle too long, or the edge is shutting down.
async fn next_request<S>(
    visitors: &Arc<Visitors>,
    visitor: &mut Visitor<S>,
) -> Result<Option<Prepared>, Fallback>
where
    S: AsyncRead + Unpin,
{
    let mut head_deadline = None;
    loop {
        if !visitor.buf.is_empty() {
            let mut spare = std::mem::take(&mut visitor.spare_head);
            let prepared = prepare(visitors, visitor, &mut spare);
            visitor.spare_head = spare;
            if let Some(prepared) = prepared? {
                return Ok(Some(prepared));
            }
            if visitor.buf.len() > max_head(visitors) {
                // hyper answers with 431.
                return Err(Fallback("request head too large"));
            }
        }
        // `--handshake-timeout` bounds the wait for the next whole head, idle time of a
        // kept-alive connection included (counted from the end of the previous response).
        let deadline = *head_deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + visitors.config.handshake_timeout);
        visitor.buf.reserve(READ_SIZE);
        let read = tokio::select! {
            read = visitor.io.read_buf(&mut visitor.buf) => read,
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            () = visitors.life.draining.cancelled(), if visitor.buf.is_empty() => return Ok(None),
        };
        match read {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// The largest request head accepted (the general path's limit too).
fn max_head(visitors: &Visitors) -> usize {
    visitors.config.max_header_bytes.max(8192)
}

/// Parses the buffered head; `Ok(None)` if it is incomplete. The head for the local service
/// is written into `spare` (taken from it when the request is ready).
fn prepare<S>(
    visitors: &Arc<Visitors>,
    visitor: &Visitor<S>,
    spare: &mut BytesMut,
) -> Result<Option<Prepared>, Fallback> {
    let mut table = [httparse::EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let mut grown;
    let headers: &mut [httparse::Header<'_>] = if visitors.config.max_headers == DEFAULT_MAX_HEADERS
    {
        &mut table
    } else {
        grown = vec![httparse::EMPTY_HEADER; visitors.config.max_headers];
        &mut grown
    };
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(&visitor.buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head(visitors) => len,
        // hyper answers with 431.
        Ok(httparse::Status::Complete(_)) => return Err(Fallback("request head too large")),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Fallback("the head does not parse")),
    };
    let facts = head::inspect(&req, head_len)?;
    let hostname = host::normalize(&facts.host_value);
    let tunnel = match host::classify_among(&hostname, visitors.config.domains()) {
        Ok(Target::Tunnel(name) | Target::Custom(name)) => visitors.agents.registry.lookup(&name),
        _ => None,
    };
    let Some(tunnel) = tunnel.filter(|t| !t.session.is_going_away()) else {
        return Err(Fallback("not a tunnel served here"));
    };
    let request_id = facts
        .request_id
        .clone()
        .unwrap_or_else(|| visitors.next_request_id());
    let mut head = std::mem::take(spare);
    head.clear();
    head::write_request(
        &mut head,
        &req,
        &facts,
        &Forwarding {
            peer: visitor.peer.ip(),
            trusted: visitor.trusted,
            proto: visitor.proto,
            request_id: &request_id,
            host_override: tunnel.host_header.as_deref(),
        },
    );
    let log = tunnel.request_log.as_ref().map(|queue| {
        RequestLogger::start(
            queue.clone(),
            tunnel.id,
            request_id.clone(),
            req.method.unwrap_or(""),
            req.path.unwrap_or("/"),
            Instant::now(),
        )
    });
    Ok(Some(Prepared {
        tunnel,
        facts,
        head,
        request_id,
        log,
    }))
}

//! Test helpers for the proxy core's pieces: a real session pair (edge and agent
//! multiplexers over an in-memory duplex pipe, the same code that runs over TCP) so a unit
//! test holds both ends of one tunnel stream, and an in-memory visitor connection.

use std::time::{Duration, Instant};
use tokio::io::DuplexStream;
use warren_proto::mux::{Heartbeat, Role};
use warren_proto::{Mux, Settings, TunnelId};
use warren_session::{Incoming, Session, Stream, WebSocket, WsRole};

/// Both ends of one session; keep it alive while the streams are used.
pub struct SessionPair {
    pub edge: Session,
    /// Kept so the agent's side of the session lives as long as the pair.
    _agent: Session,
    incoming: Incoming,
}

impl SessionPair {
    pub fn start() -> SessionPair {
        let (edge_io, agent_io) = tokio::io::duplex(1024 * 1024);
        let heartbeat = Heartbeat {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(90),
        };
        let settings = Settings::default();
        let mux = |role| Mux::new(role, settings, settings, heartbeat, Instant::now());
        let (edge, _, _) = warren_session::spawn(
            WebSocket::new(edge_io, WsRole::Server),
            mux(Role::Edge),
            tracing::Span::none(),
        );
        let (agent, incoming, _) = warren_session::spawn(
            WebSocket::new(agent_io, WsRole::Client),
            mux(Role::Agent),
            tracing::Span::none(),
        );
        SessionPair {
            edge,
            _agent: agent,
            incoming,
        }
    }

    /// A stream the edge opens (the agent sees it when its first bytes arrive).
    pub fn open(&self) -> Stream {
        self.edge.open(TunnelId(0)).expect("open")
    }

    /// The agent's end of the next stream the edge opened and wrote to.
    pub async fn accept(&mut self) -> Stream {
        tokio::time::timeout(Duration::from_secs(5), self.incoming.accept())
            .await
            .expect("the agent sees the stream")
            .expect("a stream")
    }
}

/// A visitor's connection in memory: the edge's end and the visitor's.
pub fn visitor_pipe() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(1024 * 1024)
}

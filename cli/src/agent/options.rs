//! What the agent connects where, parsed once from the command line.

use crate::agent::grant::GrantReceiver;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A local service to forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    pub host: String,
    pub port: u16,
}

impl LocalTarget {
    /// Resolves the host (once per session, not per connection).
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

impl std::fmt::Display for LocalTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One tunnel to open.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    pub local: LocalTarget,
    pub subdomain: Option<String>,
    /// The `Host` the local service gets (`--host-header`): `None` keeps the visitor's.
    pub host_header: Option<String>,
}

/// Everything the agent needs to run.
#[derive(Clone)]
pub struct AgentOptions {
    /// The edge's tunnel endpoint, e.g. `ws://localhost:8080/_warren/tunnel`.
    pub edge_url: String,
    /// A static token (`--edge URL --token T`); unused when `grant` is set.
    pub token: String,
    /// The newest grant from control: presented instead of `token` at every (re)connect.
    pub grant: Option<GrantReceiver>,
    pub tunnels: Vec<TunnelSpec>,
    /// Ask the edge for a log event per request.
    pub request_log: bool,
    /// Time allowed to connect to the edge and complete the handshake.
    pub connect_timeout: Duration,
    /// Time allowed to connect to the local service for one stream.
    pub local_connect_timeout: Duration,
    /// Whom to trust for a `wss://` edge.
    pub tls: super::tls::EdgeTrust,
    /// Sessions to hold to the edge for these tunnels (`--sessions`): the first, plus lanes
    /// that join it. 1 to [`MAX_SESSIONS`].
    pub sessions: usize,
    /// Open tunnels after the handshake on a session that outlives them (`warren mcp`,
    /// `agent/dynamic.rs`): the HELLO then carries no tunnel.
    pub dynamic_tunnels: bool,
}

/// The most sessions one agent holds for its tunnels (the edge takes up to 7 lanes).
pub const MAX_SESSIONS: usize = 8;

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("edge_url", &self.edge_url)
            .field("token", &"<redacted>")
            .field("grant", &self.grant.as_ref().map(|g| g.borrow().clone()))
            .field("tunnels", &self.tunnels)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl AgentOptions {
    pub fn new(
        edge: &str,
        token: String,
        tunnels: Vec<TunnelSpec>,
    ) -> Result<AgentOptions, String> {
        if tunnels.is_empty() {
            return Err("nothing to forward: give a local port".into());
        }
        Ok(AgentOptions {
            edge_url: edge_url(edge)?,
            token,
            grant: None,
            tunnels,
            request_log: true,
            connect_timeout: Duration::from_secs(10),
            local_connect_timeout: Duration::from_secs(10),
            tls: super::tls::default_trust(),
            sessions: 1,
            dynamic_tunnels: false,
        })
    }

    /// A session that starts with no tunnel and opens them later (`agent/dynamic.rs`).
    pub fn dynamic(edge: &str, token: String) -> Result<AgentOptions, String> {
        Ok(AgentOptions {
            edge_url: edge_url(edge)?,
            token,
            grant: None,
            tunnels: Vec::new(),
            request_log: false,
            connect_timeout: Duration::from_secs(10),
            local_connect_timeout: Duration::from_secs(10),
            tls: super::tls::default_trust(),
            sessions: 1,
            dynamic_tunnels: true,
        })
    }
}

/// Turns what a user types for `--edge` (`localhost:8080`, `http://…`, `wss://…`) into the
/// tunnel endpoint's WebSocket URL.
pub fn edge_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some(("http" | "ws", rest)) => ("ws", rest),
        Some(("https" | "wss", rest)) => ("wss", rest),
        Some((other, _)) => {
            return Err(format!(
                "--edge {raw:?} has scheme {other:?}; use http://, https://, ws:// or wss://"
            ));
        }
        None => ("ws", raw),
    };
    // Trailing slashes go only after the scheme is split off: `http://` names no host.
    let rest = rest.trim_end_matches('/');
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, String::new()),
    };
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(format!(
            "--edge {raw:?} names no host; use e.g. http://localhost:8080"
        ));
    }
    let path = if path.is_empty() {
        "/_warren/tunnel".to_string()
    } else {
        path
    };
    Ok(format!("{scheme}://{authority}{path}"))
}

/// Parses `3000`, `localhost:3000`, `192.168.1.5:80` or `[::1]:8080` with a default host.
pub fn parse_local(raw: &str, default_host: &str) -> Result<LocalTarget, String> {
    let bad = || format!("{raw:?} is not a local port: use e.g. 3000 or localhost:3000");
    if let Ok(port) = raw.parse::<u16>() {
        if port == 0 {
            return Err("port 0 is not a port a service can listen on".into());
        }
        return Ok(LocalTarget {
            host: default_host.to_string(),
            port,
        });
    }
    let (host, port) = raw.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(LocalTarget {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_urls_are_normalised() {
        assert_eq!(
            edge_url("localhost:8080").as_deref(),
            Ok("ws://localhost:8080/_warren/tunnel")
        );
        assert_eq!(
            edge_url("http://a:1/").as_deref(),
            Ok("ws://a:1/_warren/tunnel")
        );
        assert_eq!(
            edge_url("https://edge.example.net").as_deref(),
            Ok("wss://edge.example.net/_warren/tunnel")
        );
        assert_eq!(
            edge_url("ws://a:1/custom").as_deref(),
            Ok("ws://a:1/custom")
        );
        assert!(edge_url("ftp://a").is_err());
        assert!(edge_url("http://").is_err());
    }

    #[test]
    fn local_targets_parse() {
        assert_eq!(
            parse_local("3000", "localhost").map(|t| t.to_string()),
            Ok("localhost:3000".into())
        );
        assert_eq!(
            parse_local("10.0.0.2:80", "localhost").map(|t| t.host),
            Ok("10.0.0.2".into())
        );
        assert_eq!(
            parse_local("[::1]:8080", "localhost").map(|t| t.to_string()),
            Ok("[::1]:8080".into())
        );
        assert!(parse_local("0", "localhost").is_err());
        assert!(parse_local("99999", "localhost").is_err());
        assert!(parse_local("web", "localhost").is_err());
    }
}

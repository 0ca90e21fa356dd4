//! The edge's settings. Every flag also reads an environment variable (`WARREN_EDGE_*`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::duration::parse_duration;

/// Default of `--stream-window`: a quarter of what agents use for their side (256 KiB), so
/// visitors that stop reading hold a quarter as much; auto-tuning grows it for streams that
/// move fast (docs/performance.md).
pub const DEFAULT_STREAM_WINDOW: u32 = 64 * 1024;

/// Default of `--max-headers`: hyper's own limit, which keeps its header table on the stack.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Settings of one edge node.
#[derive(Clone, clap::Args)]
pub struct EdgeConfig {
    /// Domain whose subdomains are tunnels: visitors reach `NAME.<domain>`.
    #[arg(long, env = "WARREN_EDGE_DOMAIN", default_value = "localhost")]
    pub domain: String,

    /// Scheme of public tunnel URLs (`https` when a TLS terminator or the edge serves TLS).
    #[arg(long, env = "WARREN_EDGE_PUBLIC_SCHEME", default_value = "http")]
    pub public_scheme: String,

    /// Port shown in public tunnel URLs; defaults to the visitor listener's port.
    #[arg(long, env = "WARREN_EDGE_PUBLIC_PORT")]
    pub public_port: Option<u16>,

    /// Region this edge serves (shown in history and routes).
    #[arg(long, env = "WARREN_EDGE_REGION", default_value = "local")]
    pub region: String,

    /// Unique id of this edge node; random if not set.
    #[arg(long, env = "WARREN_EDGE_ID")]
    pub edge_id: Option<String>,

    /// A static token agents may present, as NAME:SECRET (the agent presents SECRET and acts
    /// as account NAME; a bare SECRET is an account of its own). Repeatable; comma-separated
    /// in the environment variable. Prefer --tokens-file: flags show in `ps`.
    #[arg(
        long = "token",
        env = "WARREN_EDGE_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,

    /// A file of static tokens, one `NAME:SECRET` a line (`#` comments), read at start; keeps
    /// secrets out of the command line. Combined with --token.
    #[arg(long, env = "WARREN_EDGE_TOKENS_FILE")]
    pub tokens_file: Option<std::path::PathBuf>,

    /// Control plane URL (e.g. https://control.internal:8081): the edge accepts grants signed
    /// with control's keys and reports its tunnel sessions there. Needs --control-secret.
    #[arg(long, env = "WARREN_EDGE_CONTROL_URL")]
    pub control_url: Option<String>,

    /// PEM file of the CA(s) that signed control's certificate: the only roots trusted for
    /// control. Default: the system's trust store.
    #[arg(long, env = "WARREN_EDGE_CONTROL_CA_FILE")]
    pub control_ca_file: Option<std::path::PathBuf>,

    /// Allow a plain http:// --control-url. Control's signing keys and the edge secret then
    /// travel in clear: only for loopback (`warren dev`) or a network nobody else can reach.
    #[arg(long, env = "WARREN_EDGE_CONTROL_INSECURE_HTTP")]
    pub control_insecure_http: bool,

    /// Secret the edge presents to control's internal API (at least 16 characters).
    #[arg(long, env = "WARREN_EDGE_CONTROL_SECRET", hide_env_values = true)]
    pub control_secret: Option<String>,

    /// File holding --control-secret (kept out of `ps`).
    #[arg(long, env = "WARREN_EDGE_CONTROL_SECRET_FILE")]
    pub control_secret_file: Option<PathBuf>,

    /// Largest request head (request line and headers) a visitor may send, in bytes.
    #[arg(long, env = "WARREN_EDGE_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Most headers in one visitor request. 100, the default, is also hyper's own: its parser
    /// then keeps the header table on the stack; any other value costs an allocation and a
    /// fill of the table per request.
    #[arg(long, env = "WARREN_EDGE_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,

    /// Time allowed for a visitor's request head and for an agent's handshake. A keep-alive
    /// visitor connection waiting this long for its next request is closed too.
    #[arg(long, env = "WARREN_EDGE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Time the local service has to start answering a request before the visitor gets 504.
    #[arg(long, env = "WARREN_EDGE_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Concurrent streams (visitor connections in flight) per agent session.
    #[arg(long, env = "WARREN_EDGE_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams_per_session: u32,

    /// What one tunnel stream may send the edge before the edge has passed it on: the initial
    /// flow-control window of each stream (64 KiB to 4 MiB). It grows by itself, up to 4 MiB,
    /// for a stream the window slows down; it is what a stream whose visitor stopped reading
    /// holds in the edge's memory (docs/protocol.md, "Flow control").
    #[arg(long, env = "WARREN_EDGE_STREAM_WINDOW", default_value_t = DEFAULT_STREAM_WINDOW)]
    pub stream_window: u32,

    /// Concurrent agent sessions on this edge.
    #[arg(long, env = "WARREN_EDGE_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: usize,

    /// Concurrent visitor connections on this edge.
    #[arg(long, env = "WARREN_EDGE_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Visitor connections from one client address at once (an IPv6 client counts by its
    /// /64). More are answered 429 and closed.
    #[arg(
        long,
        env = "WARREN_EDGE_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256
    )]
    pub max_connections_per_ip: usize,

    /// Hold loopback clients to --max-connections-per-ip too (by default they are exempt:
    /// `warren dev`, local load tests and a TLS terminator on the same host come from there).
    #[arg(long, env = "WARREN_EDGE_LIMIT_LOOPBACK")]
    pub limit_loopback: bool,

    /// Concurrent connections on the agents-only listener (--tunnel-listen).
    #[arg(
        long,
        env = "WARREN_EDGE_MAX_AGENT_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_agent_connections: usize,

    /// Concurrent connections on the relay listener (other edges).
    #[arg(
        long,
        env = "WARREN_EDGE_MAX_RELAY_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_relay_connections: usize,

    /// Concurrent connections on the admin listener.
    #[arg(long, env = "WARREN_EDGE_MAX_ADMIN_CONNECTIONS", default_value_t = 64)]
    pub max_admin_connections: usize,

    /// A visitor that takes no response bytes for this long is disconnected, and its tunnel
    /// stream released.
    #[arg(long, env = "WARREN_EDGE_VISITOR_WRITE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub visitor_write_timeout: Duration,

    /// Unsent bytes the kernel may queue on one accepted connection (`TCP_NOTSENT_LOWAT`,
    /// Linux), so visitors who stop reading cannot fill the machine's TCP memory; 0 leaves the
    /// kernel's default (unbounded up to the send buffer). docs/protocol.md, "A visitor that
    /// never reads".
    #[arg(long, env = "WARREN_EDGE_UNSENT_LOW_WATER", default_value_t = crate::accept::UNSENT_LOW_WATER)]
    pub unsent_low_water: u32,

    /// An HTTP/2 (or hyper-served HTTP/1.1) visitor connection with no request in flight for
    /// this long is closed gracefully.
    #[arg(long, env = "WARREN_EDGE_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Concurrent requests (streams) on one HTTP/2 visitor connection.
    #[arg(long, env = "WARREN_EDGE_HTTP2_MAX_STREAMS", default_value_t = 100)]
    pub http2_max_streams: u32,

    /// An upgraded connection (WebSocket) with no byte either way for this long is closed.
    /// Default: never (the agent's and the visitor's own pings keep such connections alive).
    #[arg(long, env = "WARREN_EDGE_WEBSOCKET_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub websocket_idle_timeout: Option<Duration>,

    /// Peers (CIDR, repeatable) whose X-Forwarded-For, Forwarded and X-Real-IP are kept and
    /// extended: a load balancer or TLS terminator in front of the edge. Everyone else's are
    /// replaced with the address the edge saw.
    #[arg(
        long = "trusted-proxy",
        env = "WARREN_EDGE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,

    /// Expect a PROXY protocol (v1 or v2) header on every connection to the public and agent
    /// listeners (the edge is behind an L4 load balancer); connections without a valid one are
    /// closed. The client address it carries is the one the edge uses.
    #[arg(long, env = "WARREN_EDGE_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// Failed agent authentications one address may make per minute before its handshakes
    /// are refused without being checked.
    #[arg(
        long,
        env = "WARREN_EDGE_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 10
    )]
    pub auth_failures_per_minute: u32,

    /// Which engine serves HTTP/1.1 visitors: `core` (the proxy core, default) or `hyper`
    /// (the general path for every request; slower, for comparison or as a fallback).
    #[arg(long, env = "WARREN_EDGE_HTTP1_ENGINE", default_value = "core", value_parser = ["core", "hyper"])]
    pub http1_engine: String,

    /// Idle upstream connections kept per tunnel for reuse.
    #[arg(long, env = "WARREN_EDGE_POOL_IDLE", default_value_t = 256)]
    pub pool_idle_per_tunnel: usize,

    /// Heartbeat interval on agent sessions; a session silent for three intervals is dead.
    #[arg(long, env = "WARREN_EDGE_HEARTBEAT", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Other domains whose tunnels this edge also serves (other regions' domains), so any edge
    /// serves any hostname. Repeatable; comma-separated in the environment variable.
    #[arg(
        long = "serve-domain",
        env = "WARREN_EDGE_SERVE_DOMAINS",
        value_delimiter = ','
    )]
    pub serve_domains: Vec<String>,

    /// Redis holding the cluster's routes and edge directory: `redis://HOST:PORT` or
    /// `redis+cluster://HOST:PORT,HOST:PORT` for Redis Cluster. Without it the edge keeps routes
    /// in process (a single-edge deployment).
    #[arg(long, env = "WARREN_EDGE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// File holding --redis-url (it may carry a password).
    #[arg(long, env = "WARREN_EDGE_REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,

    /// Shared secret every edge of the cluster presents on the internal relay channel.
    #[arg(long, env = "WARREN_EDGE_RELAY_KEY", hide_env_values = true)]
    pub relay_key: Option<String>,

    /// File holding --relay-key.
    #[arg(long, env = "WARREN_EDGE_RELAY_KEY_FILE")]
    pub relay_key_file: Option<PathBuf>,

    /// `HOST:PORT` other edges use to reach this edge's relay listener (default: the address
    /// the relay listener is bound to).
    #[arg(long, env = "WARREN_EDGE_RELAY_ADVERTISE")]
    pub relay_advertise: Option<String>,

    /// How long a visitor request for a tunnel whose agent is reconnecting is held, waiting for
    /// it to come back, before it fails with 502.
    #[arg(long, env = "WARREN_EDGE_HOLD", default_value = "10s", value_parser = parse_duration)]
    pub hold_timeout: Duration,

    /// Most visitor requests held at once on this edge; more fail at once with 502.
    #[arg(long, env = "WARREN_EDGE_MAX_HELD", default_value_t = 10_000)]
    pub max_held: usize,

    /// How long shutdown waits for in-flight requests before closing everything.
    #[arg(long, env = "WARREN_EDGE_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// TLS for visitors: certificate files or ACME, and the shared certificate store.
    #[command(flatten)]
    pub tls: crate::tls::TlsSettings,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            domain: "localhost".into(),
            public_scheme: "http".into(),
            public_port: None,
            region: "local".into(),
            edge_id: None,
            tokens: Vec::new(),
            tokens_file: None,
            control_url: None,
            control_ca_file: None,
            control_insecure_http: false,
            control_secret: None,
            control_secret_file: None,
            max_header_bytes: 64 * 1024,
            max_headers: DEFAULT_MAX_HEADERS,
            handshake_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(60),
            max_streams_per_session: 10_000,
            stream_window: DEFAULT_STREAM_WINDOW,
            max_sessions: 10_000,
            max_connections: 50_000,
            pool_idle_per_tunnel: 256,
            max_connections_per_ip: 256,
            limit_loopback: false,
            max_agent_connections: 10_000,
            max_relay_connections: 10_000,
            max_admin_connections: 64,
            visitor_write_timeout: Duration::from_secs(60),
            unsent_low_water: crate::accept::UNSENT_LOW_WATER,
            idle_timeout: Duration::from_secs(120),
            http2_max_streams: 100,
            websocket_idle_timeout: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            auth_failures_per_minute: 10,
            http1_engine: "core".into(),
            heartbeat_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            serve_domains: Vec::new(),
            hold_timeout: Duration::from_secs(10),
            max_held: 10_000,
            redis_url: None,
            redis_url_file: None,
            relay_key: None,
            relay_key_file: None,
            relay_advertise: None,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

impl fmt::Debug for EdgeConfig {
    // Tokens are secrets: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("domain", &self.domain)
            .field("public_scheme", &self.public_scheme)
            .field("public_port", &self.public_port)
            .field("region", &self.region)
            .field("edge_id", &self.edge_id)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("tokens_file", &self.tokens_file)
            .field("control_url", &self.control_url)
            .field("control_ca_file", &self.control_ca_file)
            .field("control_insecure_http", &self.control_insecure_http)
            .field(
                "control_secret",
                &self.control_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("max_header_bytes", &self.max_header_bytes)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("max_streams_per_session", &self.max_streams_per_session)
            .field("max_sessions", &self.max_sessions)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("visitor_write_timeout", &self.visitor_write_timeout)
            .field("unsent_low_water", &self.unsent_low_water)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("proxy_protocol", &self.proxy_protocol)
            .field("serve_domains", &self.serve_domains)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::routes::redis::redact),
            )
            .field("relay_key", &self.relay_key.as_ref().map(|_| "<redacted>"))
            .field("relay_advertise", &self.relay_advertise)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A setting [`EdgeConfig::validate`] refuses; the message names the flag and what it needs.
#[derive(Debug, thiserror::Error)]
pub enum BadConfig {
    #[error("--domain {domain:?} must be a host name such as tunnels.example.net")]
    Domain { domain: String },
    #[error("--public-scheme must be http or https, not {scheme:?}")]
    PublicScheme { scheme: String },
    #[error("--max-header-bytes must be at least 8192")]
    MaxHeaderBytes,
    #[error(
        "--max-streams, --max-sessions, --max-connections, --max-connections-per-ip, \
         --max-agent-connections, --max-relay-connections, --max-admin-connections and \
         --http2-max-streams must be at least 1"
    )]
    ZeroLimit,
    #[error("{flag} must be at least 100ms")]
    TimeoutTooShort { flag: &'static str },
    #[error("--stream-window must be between {min} and {max} bytes")]
    StreamWindow { min: u32, max: u32 },
    #[error("--http1-engine must be core or hyper, not {engine:?}")]
    Http1Engine { engine: String },
    #[error(transparent)]
    TrustedProxy(#[from] crate::forwarding::client::BadRange),
    #[error("--relay-key must be at least 16 printable characters")]
    RelayKey,
    #[error("--redis-url and --relay-key go together: a cluster of edges needs both")]
    ClusterHalfConfigured,
    #[error("--heartbeat must be at least 100ms")]
    HeartbeatTooShort,
    #[error(transparent)]
    Tls(#[from] crate::tls::settings::BadTlsSettings),
    #[error(transparent)]
    Control(#[from] BadControlSettings),
}

/// `--control-url` and `--control-secret` that do not make a link to control.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadControlSettings {
    #[error(
        "--control-url needs --control-secret (WARREN_EDGE_CONTROL_SECRET): the secret \
         control expects from edges"
    )]
    NoSecret,
    #[error("--control-secret is set but --control-url is not: pass the control plane's URL")]
    NoUrl,
    #[error("--control-url {url:?} is not a URL: use e.g. http://control.internal:8081")]
    NotAUrl { url: String },
    #[error("--control-url {url:?} must be an https:// URL with a host")]
    NotHttps { url: String },
    #[error("{}", crate::control_http::insecure_refused(.url))]
    PlainHttp { url: String },
    #[error("--control-secret must be at least 16 characters long")]
    ShortSecret,
}

impl EdgeConfig {
    /// Reads every `*-file` secret into its value (`--control-secret-file` into
    /// `control_secret`, ...). The binary calls it once, before [`EdgeConfig::validate`].
    pub fn read_secret_files(&mut self) -> Result<(), crate::secrets::BadSecretFile> {
        use crate::secrets::merge;
        merge(
            &mut self.control_secret,
            self.control_secret_file.as_deref(),
            "--control-secret",
        )?;
        merge(
            &mut self.redis_url,
            self.redis_url_file.as_deref(),
            "--redis-url",
        )?;
        merge(
            &mut self.relay_key,
            self.relay_key_file.as_deref(),
            "--relay-key",
        )?;
        // --tokens-file is read with the tokens' names by `StaticTokens::from_sources`.
        Ok(())
    }

    /// Checks the settings; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), BadConfig> {
        let domain = &self.domain;
        if domain.is_empty()
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains(':')
        {
            return Err(BadConfig::Domain {
                domain: domain.clone(),
            });
        }
        if !matches!(self.public_scheme.as_str(), "http" | "https") {
            return Err(BadConfig::PublicScheme {
                scheme: self.public_scheme.clone(),
            });
        }
        if self.max_header_bytes < 8192 {
            return Err(BadConfig::MaxHeaderBytes);
        }
        if self.max_streams_per_session == 0
            || self.max_sessions == 0
            || self.max_connections == 0
            || self.max_connections_per_ip == 0
            || self.max_agent_connections == 0
            || self.max_relay_connections == 0
            || self.max_admin_connections == 0
            || self.http2_max_streams == 0
        {
            return Err(BadConfig::ZeroLimit);
        }
        for (flag, value) in [
            ("--visitor-write-timeout", self.visitor_write_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--upstream-timeout", self.upstream_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return Err(BadConfig::TimeoutTooShort { flag });
            }
        }
        let max_window = warren_proto::mux::GROWN_WINDOW;
        if !(warren_proto::Settings::MIN_WINDOW..=max_window).contains(&self.stream_window) {
            return Err(BadConfig::StreamWindow {
                min: warren_proto::Settings::MIN_WINDOW,
                max: max_window,
            });
        }
        if !matches!(self.http1_engine.as_str(), "core" | "hyper") {
            return Err(BadConfig::Http1Engine {
                engine: self.http1_engine.clone(),
            });
        }
        crate::forwarding::client::TrustedProxies::parse(&self.trusted_proxies)?;
        if let Some(key) = &self.relay_key
            && (key.len() < 16 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(BadConfig::RelayKey);
        }
        if self.redis_url.is_some() != self.relay_key.is_some() {
            return Err(BadConfig::ClusterHalfConfigured);
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            return Err(BadConfig::HeartbeatTooShort);
        }
        self.tls.validate(self.redis_url.is_some())?;
        self.validate_control()?;
        Ok(())
    }

    /// `--control-url` and `--control-secret` come together, and make sense.
    fn validate_control(&self) -> Result<(), BadControlSettings> {
        match (&self.control_url, &self.control_secret) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(BadControlSettings::NoSecret),
            (None, Some(_)) => Err(BadControlSettings::NoUrl),
            (Some(url), Some(secret)) => {
                let Ok(uri) = url.parse::<http::Uri>() else {
                    return Err(BadControlSettings::NotAUrl { url: url.clone() });
                };
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(BadControlSettings::NotHttps { url: url.clone() });
                }
                if uri.scheme_str() == Some("http") && !self.control_insecure_http {
                    return Err(BadControlSettings::PlainHttp { url: url.clone() });
                }
                if secret.chars().count() < 16 {
                    return Err(BadControlSettings::ShortSecret);
                }
                Ok(())
            }
        }
    }

    /// The receive settings the edge announces to agents in WELCOME.
    pub fn receive_settings(&self) -> warren_proto::Settings {
        warren_proto::Settings {
            stream_window: self.stream_window,
            max_streams: self.max_streams_per_session,
            ..warren_proto::Settings::default()
        }
    }

    /// How this edge trusts its link to control.
    pub fn control_trust(&self) -> crate::control_http::ControlTrust {
        crate::control_http::ControlTrust {
            ca_file: self.control_ca_file.clone(),
            insecure_http: self.control_insecure_http,
        }
    }

    /// Whether this edge is connected to a control plane.
    pub fn has_control(&self) -> bool {
        self.control_url.is_some()
    }

    /// Every domain whose tunnels this edge serves: its own first.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.domain.as_str()).chain(self.serve_domains.iter().map(String::as_str))
    }

    /// The public URL of a tunnel hostname, given the port visitors connect to.
    pub fn public_url(&self, hostname: &str, listener: Option<SocketAddr>) -> String {
        let port = self.public_port.or(listener.map(|a| a.port()));
        let default_port = if self.public_scheme == "https" {
            443
        } else {
            80
        };
        match port {
            Some(port) if port != default_port => {
                format!("{}://{hostname}:{port}", self.public_scheme)
            }
            _ => format!("{}://{hostname}", self.public_scheme),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_omit_default_ports() {
        let config = EdgeConfig::default();
        let addr: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(
            config.public_url("a.localhost", Some(addr)),
            "http://a.localhost:8080"
        );
        let https = EdgeConfig {
            public_scheme: "https".into(),
            public_port: Some(443),
            ..EdgeConfig::default()
        };
        assert_eq!(
            https.public_url("a.example.net", Some(addr)),
            "https://a.example.net"
        );
    }

    #[test]
    fn debug_never_shows_tokens() {
        let config = EdgeConfig {
            tokens: vec!["wrn_secret".into()],
            control_url: Some("http://127.0.0.1:1".into()),
            control_secret: Some("edge-secret-0123456789".into()),
            ..EdgeConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("wrn_secret"));
        assert!(!debug.contains("edge-secret"));
    }

    #[test]
    fn control_settings_are_validated() {
        let with = |url: Option<&str>, secret: Option<&str>| EdgeConfig {
            control_url: url.map(str::to_string),
            control_secret: secret.map(str::to_string),
            control_insecure_http: true,
            ..EdgeConfig::default()
        };
        let secret = Some("0123456789abcdef");
        assert!(with(None, None).validate().is_ok());
        assert!(
            with(Some("http://127.0.0.1:8081"), secret)
                .validate()
                .is_ok()
        );
        assert!(
            with(Some("https://control.example.net"), secret)
                .validate()
                .is_ok()
        );
        assert!(
            with(Some("http://127.0.0.1:8081"), None)
                .validate()
                .is_err()
        );
        assert!(with(None, secret).validate().is_err());
        assert!(with(Some("ftp://x"), secret).validate().is_err());
        assert!(with(Some("not a url"), secret).validate().is_err());
        assert!(
            with(Some("http://127.0.0.1:8081"), Some("short"))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn plain_http_control_needs_the_insecure_flag() {
        let config = EdgeConfig {
            control_url: Some("http://control.internal:8081".into()),
            control_secret: Some("0123456789abcdef".into()),
            ..EdgeConfig::default()
        };
        let err = config
            .validate()
            .expect_err("plain http refused")
            .to_string();
        assert!(err.contains("--control-insecure-http"), "{err}");
        let https = EdgeConfig {
            control_url: Some("https://control.internal:8081".into()),
            ..config.clone()
        };
        assert!(https.validate().is_ok());
        let insecure = EdgeConfig {
            control_insecure_http: true,
            ..config
        };
        assert!(insecure.validate().is_ok());
    }
}

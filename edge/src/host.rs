//! Which tunnel a visitor asked for, from the `Host` header (or the HTTP/2 `:authority`).

use crate::error::EdgeError;
use http::Request;
use warren_proto::names::CustomDomain;

/// Where a request is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The edge's own domain: the tunnel endpoint, health checks, the landing page.
    Apex,
    /// A tunnel hostname (`NAME.<domain>`), lowercased, without port.
    Tunnel(String),
    /// A hostname outside every domain of the edge: a tunnel only if a session serves it under
    /// a grant for that custom domain (`GrantClaims::custom_domain`), else an unknown host.
    Custom(String),
}

/// The host a request names, lowercased and without port: the authority of an absolute-form
/// target (or HTTP/2 `:authority`), which overrides `Host` (RFC 9112 §3.2.2), else `Host`.
pub fn request_host<B>(req: &Request<B>) -> Result<String, EdgeError> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => single_host(req)?.ok_or(EdgeError::MissingHost)?,
    };
    Ok(normalize(raw))
}

/// A `Host` value as routes know it: without port or trailing dot, lowercased.
pub fn normalize(raw: &str) -> String {
    strip_port(raw).trim_end_matches('.').to_ascii_lowercase()
}

/// The `Host` header, refusing two of them: which one routes would be a guess (RFC 9112 §3.2).
fn single_host<B>(req: &Request<B>) -> Result<Option<&str>, EdgeError> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let Some(host) = hosts.next() else {
        return Ok(None);
    };
    if hosts.next().is_some() {
        return Err(EdgeError::BadRequest(
            "the request has more than one Host header".into(),
        ));
    }
    host.to_str()
        .map(Some)
        .map_err(|_| EdgeError::BadRequest("the Host header is not valid text".into()))
}

/// Classifies `host` against every domain the edge serves (its own first): the apex of any of
/// them is the edge itself, `NAME.<any of them>` a tunnel.
pub fn classify_among<'a>(
    host: &str,
    domains: impl Iterator<Item = &'a str>,
) -> Result<Target, EdgeError> {
    let mut outside_all = true;
    for domain in domains {
        if let Ok(target) = classify(host, domain) {
            return Ok(target);
        }
        outside_all &= !host.ends_with(&format!(".{domain}"));
    }
    // `a.b.<domain>` stays unknown; a name outside all of them may be a custom domain.
    if outside_all && CustomDomain::parse(host).is_ok_and(|d| d.as_str() == host) {
        return Ok(Target::Custom(host.to_string()));
    }
    Err(EdgeError::UnknownHost {
        host: host.to_string(),
    })
}

/// Classifies `host` against the edge's `domain`.
pub fn classify(host: &str, domain: &str) -> Result<Target, EdgeError> {
    // Health checks and agents often address the edge by IP; an IP is never a tunnel.
    if host == domain || (may_be_ip(host) && host.parse::<std::net::IpAddr>().is_ok()) {
        return Ok(Target::Apex);
    }
    match host.strip_suffix(domain).and_then(|p| p.strip_suffix('.')) {
        Some(label) if !label.is_empty() && !label.contains('.') => {
            Ok(Target::Tunnel(host.to_string()))
        }
        _ => Err(EdgeError::UnknownHost {
            host: host.to_string(),
        }),
    }
}

/// Whether `host` could be an IP address: IPv4 ends in a digit, IPv6 has colons. Names (the
/// usual case, on every request) skip the address parser.
fn may_be_ip(host: &str) -> bool {
    host.ends_with(|c: char| c.is_ascii_digit()) || host.contains(':')
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: [::1]:8080
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_tunnel_apex_and_foreign_hosts() {
        assert_eq!(classify("localhost", "localhost").ok(), Some(Target::Apex));
        assert_eq!(classify("127.0.0.1", "localhost").ok(), Some(Target::Apex));
        assert_eq!(classify("::1", "localhost").ok(), Some(Target::Apex));
        assert_eq!(
            classify("demo.localhost", "localhost").ok(),
            Some(Target::Tunnel("demo.localhost".into()))
        );
        assert!(classify("a.b.localhost", "localhost").is_err());
        assert!(classify("evil-localhost", "localhost").is_err());
        assert!(classify("example.com", "localhost").is_err());
    }

    #[test]
    fn hosts_outside_every_domain_may_be_custom_domains() {
        let domains = || ["eu.example.net", "localhost"].into_iter();
        let custom = |host: &str| classify_among(host, domains()).ok();
        assert_eq!(
            custom("app.example.com"),
            Some(Target::Custom("app.example.com".into()))
        );
        assert_eq!(
            custom("demo.eu.example.net"),
            Some(Target::Tunnel("demo.eu.example.net".into()))
        );
        assert_eq!(custom("localhost"), Some(Target::Apex));
        for unknown in [
            "a.b.eu.example.net",
            "a.b.localhost",
            "evil-localhost",
            "com",
        ] {
            assert!(custom(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn host_header_is_normalised() {
        let req = Request::builder()
            .header("host", "Demo.LocalHost:8080")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req).ok().as_deref(), Some("demo.localhost"));
        let req = Request::builder()
            .uri("http://x.localhost:1/")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req).ok().as_deref(), Some("x.localhost"));
        let req = Request::builder()
            .header("host", "[::1]:80")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req).ok().as_deref(), Some("::1"));
    }

    #[test]
    fn absolute_target_overrides_host_and_two_hosts_are_refused() {
        let req = Request::builder()
            .uri("http://a.localhost/x")
            .header("host", "b.localhost")
            .body(())
            .expect("request");
        assert_eq!(request_host(&req).ok().as_deref(), Some("a.localhost"));
        let req = Request::builder()
            .header("host", "a.localhost")
            .header("host", "b.localhost")
            .body(())
            .expect("request");
        assert!(matches!(request_host(&req), Err(EdgeError::BadRequest(_))));
    }
}

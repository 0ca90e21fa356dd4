//! What the operator configures: the database, the public URL, the regions, the edge secret.

use std::time::Duration;

use warren_proto::grant::DEFAULT_GRANT_TTL_SECS;

/// Everything control needs to run; the binary builds it from flags, `warren dev` and tests
/// build it directly.
#[derive(Clone)]
pub struct ControlConfig {
    /// `postgres://...`, `sqlite://path?mode=rwc` or `sqlite::memory:`.
    pub database_url: String,
    /// Where clients reach control, e.g. `http://127.0.0.1:8081` (used in docs and links).
    pub public_url: String,
    /// At least one; the first is the default region.
    pub regions: Vec<RegionConfig>,
    /// The bearer secret edges use on `/internal`; `None` disables `/internal`.
    pub edge_secret: Option<String>,
    /// How long a grant is valid.
    pub grant_ttl: Duration,
    /// The cluster's Redis (`redis://...` or `redis+cluster://a,b,c`): control reads session
    /// events from its stream and publishes closes on it. `None`: edges report over HTTP.
    pub redis_url: Option<String>,
    /// This control instance's name in the events consumer group; stable across restarts so
    /// a restarted control finds the entries it had read but not applied.
    pub instance_id: String,
}

impl ControlConfig {
    /// A config with one region and the default grant lifetime.
    pub fn new(database_url: impl Into<String>, public_url: impl Into<String>) -> ControlConfig {
        ControlConfig {
            database_url: database_url.into(),
            public_url: public_url.into(),
            regions: Vec::new(),
            edge_secret: None,
            grant_ttl: Duration::from_secs(DEFAULT_GRANT_TTL_SECS),
            redis_url: None,
            instance_id: default_instance_id(),
        }
    }
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("regions", &self.regions)
            .field(
                "edge_secret",
                &self.edge_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("grant_ttl", &self.grant_ttl)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(warren_bus::redact),
            )
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

/// The host's name, else `control`: a stable consumer name for one control per host.
pub fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() <= 200)
        .unwrap_or_else(|| "control".to_string())
}

/// Hides a password in a database URL (`postgres://user:secret@host` → `postgres://user:***@host`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// One region: a set of edges behind one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    /// Short id, e.g. `eu`.
    pub id: String,
    /// Human name, e.g. `Europe`.
    pub name: String,
    /// Where it is, e.g. `Frankfurt`.
    pub location: String,
    /// Tunnels get `NAME.{domain}`.
    pub domain: String,
    /// Where agents connect, e.g. `wss://eu.example.net`.
    pub tunnel_url: String,
    /// What the CLI probes to measure latency.
    pub probe_url: String,
    /// `http` or `https`: the scheme of public URLs.
    pub public_scheme: String,
    /// The port of public URLs when it is not the scheme's default.
    pub public_port: Option<u16>,
}

impl RegionConfig {
    /// Parses `id=eu,name=Europe,location=Frankfurt,domain=eu.example.net,tunnel_url=wss://...,
    /// probe_url=https://...[,public_scheme=https][,public_port=8443]`. Unknown keys are errors.
    pub fn parse(spec: &str) -> Result<RegionConfig, String> {
        let mut region = RegionConfig {
            id: String::new(),
            name: String::new(),
            location: String::new(),
            domain: String::new(),
            tunnel_url: String::new(),
            probe_url: String::new(),
            public_scheme: "https".to_string(),
            public_port: None,
        };
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("region part {part:?} is not key=value"));
            };
            let value = value.trim().to_string();
            match key.trim() {
                "id" => region.id = value,
                "name" => region.name = value,
                "location" => region.location = value,
                "domain" => region.domain = value.to_ascii_lowercase(),
                "tunnel_url" => region.tunnel_url = value,
                "probe_url" => region.probe_url = value,
                "public_scheme" => region.public_scheme = value,
                "public_port" => {
                    let port = value
                        .parse()
                        .map_err(|_| format!("region public_port {value:?} is not a port"))?;
                    region.public_port = Some(port);
                }
                other => {
                    return Err(format!(
                        "unknown region key {other:?}; known keys: id, name, location, domain, \
                         tunnel_url, probe_url, public_scheme, public_port"
                    ));
                }
            }
        }
        region.validate()?;
        Ok(region)
    }

    /// Checks the fields a region cannot do without.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("id", &self.id),
            ("domain", &self.domain),
            ("tunnel_url", &self.tunnel_url),
        ] {
            if value.is_empty() {
                return Err(format!("region {:?} needs {key}=...", self.id));
            }
        }
        if self.public_scheme != "http" && self.public_scheme != "https" {
            return Err(format!(
                "region {:?}: public_scheme must be http or https, not {:?}",
                self.id, self.public_scheme
            ));
        }
        Ok(())
    }

    /// `{public_scheme}://{hostname}[:{public_port}]`.
    pub fn public_url(&self, hostname: &str) -> String {
        match self.public_port {
            Some(port) => format!("{}://{hostname}:{port}", self.public_scheme),
            None => format!("{}://{hostname}", self.public_scheme),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_region_and_rejects_unknown_keys() {
        let region = RegionConfig::parse(
            "id=eu,name=Europe,location=Frankfurt,domain=eu.example.net,\
             tunnel_url=wss://eu.example.net,probe_url=https://eu.example.net/_warren/probe",
        )
        .expect("valid");
        assert_eq!(region.id, "eu");
        assert_eq!(
            region.public_url("a.eu.example.net"),
            "https://a.eu.example.net"
        );
        let err = RegionConfig::parse("id=eu,colour=blue").expect_err("unknown key");
        assert!(err.contains("colour"), "{err}");
        let err = RegionConfig::parse("id=eu").expect_err("missing domain");
        assert!(err.contains("domain"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut config = ControlConfig::new("postgres://u:hunter2@h/db", "http://x");
        config.edge_secret = Some("s3cret".into());
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}

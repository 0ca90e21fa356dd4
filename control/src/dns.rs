//! DNS lookups that verify custom domains: the TXT record holding the domain's token and the
//! CNAME pointing it at a region.
//!
//! Every check builds a fresh resolver: nothing is cached, so a record created a second ago is
//! seen at once, and a change to `/etc/resolv.conf` is picked up. The resolver is the system's
//! (`/etc/resolv.conf`) unless `--dns-resolver ADDR` names one (tests point it at a local DNS
//! server). Each query has a timeout; a server that does not answer is an error that names it.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

/// How long one query may take (one attempt per transport).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many records of one name are considered (and shown in errors).
const MAX_RECORDS: usize = 10;

/// Where lookups go: the system's resolver, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsResolver {
    #[default]
    System,
    At(SocketAddr),
}

/// Why a lookup found nothing to compare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name has no record of that type (or does not exist).
    #[error("no record")]
    NoRecords,
    /// The resolver did not answer, or answered with an error.
    #[error("{0}")]
    Failed(String),
}

impl DnsResolver {
    /// The resolver as shown in error messages.
    pub fn describe(&self) -> String {
        match self {
            DnsResolver::System => "the system's DNS resolver".into(),
            DnsResolver::At(addr) => format!("the DNS resolver at {addr}"),
        }
    }

    fn build(&self) -> Result<TokioResolver, LookupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match self {
            DnsResolver::System => Resolver::builder(provider).map_err(|e| {
                LookupError::Failed(format!("cannot read the system's DNS configuration: {e}"))
            })?,
            DnsResolver::At(addr) => {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                )
            }
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = 1;
        options.cache_size = 0;
        builder
            .build()
            .map_err(|e| LookupError::Failed(format!("cannot set up DNS resolution: {e}")))
    }

    /// The TXT records of `name` (each record's strings joined).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let records = self.lookup(name, RecordType::TXT).await?;
        Ok(records
            .into_iter()
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The CNAME targets of `name`, lowercase, without the trailing dot.
    pub async fn cname(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let records = self.lookup(name, RecordType::CNAME).await?;
        Ok(records
            .into_iter()
            .filter_map(|data| match data {
                RData::CNAME(target) => Some(
                    target
                        .0
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                ),
                _ => None,
            })
            .collect())
    }

    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Vec<RData>, LookupError> {
        let resolver = self.build()?;
        // Fully qualified: the search domains of resolv.conf are never appended.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        // The resolver has its own timeouts; this bounds the whole lookup whatever happens.
        let lookup = tokio::time::timeout(QUERY_TIMEOUT * 3, resolver.lookup(fqdn, kind)).await;
        match lookup {
            Err(_) => Err(self.timed_out(kind, name)),
            Ok(Err(e)) => Err(self.failure(kind, name, &e)),
            Ok(Ok(found)) => {
                let data: Vec<RData> = found
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == kind)
                    .take(MAX_RECORDS)
                    .map(|r| r.data.clone())
                    .collect();
                if data.is_empty() {
                    Err(LookupError::NoRecords)
                } else {
                    Ok(data)
                }
            }
        }
    }

    fn timed_out(&self, kind: RecordType, name: &str) -> LookupError {
        LookupError::Failed(format!(
            "{} did not answer the {kind} query for {name} in time; try again later",
            self.describe()
        ))
    }

    fn failure(&self, kind: RecordType, name: &str, err: &NetError) -> LookupError {
        if err.is_no_records_found() {
            return LookupError::NoRecords;
        }
        if matches!(err, NetError::Timeout) {
            return self.timed_out(kind, name);
        }
        LookupError::Failed(format!(
            "{} failed the {kind} query for {name} ({err}); try again later",
            self.describe()
        ))
    }
}

//! Latency to each region, so `warren http --region auto` can pick the nearest one.
//!
//! Every region's `probe_url` (from `GET /v1/regions`) is probed in parallel: a few samples per
//! region, each a fresh TCP connection plus one HTTP/1.1 `GET` of the probe URL (so a sample
//! is what opening a tunnel costs: the connection and a request round trip), each under its own
//! timeout. A region's latency is the median of its samples; regions that never answered are
//! "unreachable" and never picked.
//!
//! `https://` probe URLs are timed by their TCP connect only (TLS comes later); when any region
//! was timed that way, all regions are compared by their connect times, so the comparison
//! stays fair.

use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Samples per region.
pub const SAMPLES: usize = 3;
/// How long one sample (connect + request) may take.
pub const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a probe answer's head that is read.
const MAX_HEAD: usize = 8 * 1024;

/// One region to probe.
#[derive(Debug, Clone)]
pub struct Target {
    pub region: String,
    pub probe_url: String,
}

/// How a region was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// TCP connect plus an HTTP request round trip.
    Http,
    /// TCP connect only (`https://` probe URLs, for now).
    Tcp,
}

/// One successful sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub connect: Duration,
    /// Connect plus the request round trip; `None` when only the connect was timed.
    pub total: Option<Duration>,
}

/// What probing one region found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub region: String,
    pub method: Method,
    /// Successful samples, in the order taken.
    pub samples: Vec<Sample>,
    /// Why the last failed sample failed (or why the region could not be probed at all).
    pub error: Option<String>,
}

impl Probe {
    /// The median latency by `method`, if any sample succeeded.
    pub fn latency(&self, by: Method) -> Option<Duration> {
        let mut values: Vec<Duration> = self
            .samples
            .iter()
            .map(|s| match by {
                Method::Http => s.total.unwrap_or(s.connect),
                Method::Tcp => s.connect,
            })
            .collect();
        values.sort();
        values.get(values.len() / 2).copied()
    }

    /// The latency shown for this region: its own method's median.
    pub fn shown(&self) -> Option<Duration> {
        self.latency(self.method)
    }
}

/// Probes every target in parallel; the result is in the targets' order.
pub async fn probe_all(targets: &[Target], samples: usize, timeout: Duration) -> Vec<Probe> {
    let tasks: Vec<_> = targets
        .iter()
        .cloned()
        .map(|t| tokio::spawn(async move { probe(&t, samples, timeout).await }))
        .collect();
    let mut probes = Vec::with_capacity(tasks.len());
    for (task, target) in tasks.into_iter().zip(targets) {
        probes.push(task.await.unwrap_or_else(|e| Probe {
            region: target.region.clone(),
            method: Method::Http,
            samples: Vec::new(),
            error: Some(format!("the probe failed: {e}")),
        }));
    }
    probes
}

/// `samples` fresh connections to one region, one after the other.
pub async fn probe(target: &Target, samples: usize, timeout: Duration) -> Probe {
    let mut probe = Probe {
        region: target.region.clone(),
        method: Method::Http,
        samples: Vec::new(),
        error: None,
    };
    if target.probe_url.is_empty() {
        probe.error = Some("control lists no probe URL for it".into());
        return probe;
    }
    let url = match ProbeUrl::parse(&target.probe_url) {
        Ok(url) => url,
        Err(e) => {
            probe.error = Some(e);
            return probe;
        }
    };
    probe.method = url.method;
    let addr = match tokio::time::timeout(timeout, tokio::net::lookup_host(&url.authority)).await {
        Ok(Ok(mut addrs)) => addrs.next(),
        _ => None,
    };
    let Some(addr) = addr else {
        probe.error = Some(format!("cannot resolve {}", url.authority));
        return probe;
    };
    for _ in 0..samples {
        match tokio::time::timeout(timeout, sample(addr, &url)).await {
            Ok(Ok(s)) => probe.samples.push(s),
            Ok(Err(e)) => probe.error = Some(e),
            Err(_) => probe.error = Some(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
    probe
}

async fn sample(addr: std::net::SocketAddr, url: &ProbeUrl) -> Result<Sample, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let connect = started.elapsed();
    if url.method == Method::Tcp {
        return Ok(Sample {
            connect,
            total: None,
        });
    }
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: warren/{}\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    let io = |e: std::io::Error| format!("the probe connection to {addr} failed: {e}");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Err(format!("{addr} sent no HTTP answer to the probe"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let total = started.elapsed();
    let status = std::str::from_utf8(&head)
        .ok()
        .and_then(|h| h.strip_prefix("HTTP/1."))
        .and_then(|h| h.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(Sample {
            connect,
            total: Some(total),
        }),
        Some(code) => Err(format!("the probe URL answered HTTP {code}")),
        None => Err(format!("{addr} sent no HTTP answer to the probe")),
    }
}

/// The parts of a probe URL a sample needs.
#[derive(Debug, PartialEq)]
struct ProbeUrl {
    method: Method,
    /// `host:port`, for resolving and for the `Host` header.
    authority: String,
    path: String,
}

impl ProbeUrl {
    fn parse(raw: &str) -> Result<ProbeUrl, String> {
        let bad = |why: &str| format!("probe URL {raw:?} {why}");
        let uri: http::Uri = raw.parse().map_err(|_| bad("is not a URL"))?;
        let (method, default_port) = match uri.scheme_str() {
            Some("http") => (Method::Http, 80),
            Some("https") => (Method::Tcp, 443),
            _ => return Err(bad("is not http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("has no host"))?;
        let port = uri.port_u16().unwrap_or(default_port);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(ProbeUrl {
            method,
            authority: format!("{host}:{port}"),
            path,
        })
    }
}

/// The region with the lowest latency. Regions are compared by their full round trip, or by
/// connect time alone when any region could only be timed that way. No region answered: an
/// error sentence naming each region's failure and what to do.
pub fn choose(probes: &[Probe]) -> Result<String, String> {
    let by = if probes
        .iter()
        .any(|p| p.method == Method::Tcp && !p.samples.is_empty())
    {
        Method::Tcp
    } else {
        Method::Http
    };
    if let Some((_, probe)) = probes
        .iter()
        .filter_map(|p| p.latency(by).map(|l| (l, p)))
        .min_by_key(|(l, _)| *l)
    {
        return Ok(probe.region.clone());
    }
    let why: Vec<String> = probes
        .iter()
        .map(|p| {
            let error = p.error.as_deref().unwrap_or("no answer");
            format!("{}: {error}", p.region)
        })
        .collect();
    Err(format!(
        "no region answered the latency probe ({}): check your network, or pick one with --region ID",
        why.join("; ")
    ))
}

/// `eu 12 ms · us 143 ms → eu` (`→ ?` when nothing was chosen).
pub fn summary_line(probes: &[Probe], chosen: Option<&str>) -> String {
    let cells: Vec<String> = probes
        .iter()
        .map(|p| format!("{} {}", p.region, latency_label(p)))
        .collect();
    format!("{} → {}", cells.join(" · "), chosen.unwrap_or("?"))
}

/// `12 ms`, `0.4 ms`, `6.1 ms (tcp)` or `unreachable`.
pub fn latency_label(probe: &Probe) -> String {
    match (probe.shown(), probe.method) {
        (None, _) => "unreachable".into(),
        (Some(l), Method::Http) => format_ms(l),
        (Some(l), Method::Tcp) => format!("{} (tcp)", format_ms(l)),
    }
}

/// Milliseconds for people: one decimal under 10 ms, whole numbers above.
pub fn format_ms(latency: Duration) -> String {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The probes as JSON: `[{id, method, latency_ms, samples_ms, error}]`.
pub fn to_json(probes: &[Probe]) -> serde_json::Value {
    probes
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.region,
                "method": p.method,
                "latency_ms": p.shown().map(json_ms),
                "samples_ms": p.samples.iter().map(|s| json_ms(s.total.unwrap_or(s.connect))).collect::<Vec<_>>(),
                "error": p.error,
            })
        })
        .collect()
}

/// Milliseconds as a JSON number, to a hundredth.
pub fn json_ms(latency: Duration) -> f64 {
    (latency.as_secs_f64() * 100_000.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_urls_parse() -> Result<(), String> {
        let url = ProbeUrl::parse("http://127.0.0.1:8080/_warren/probe")?;
        assert_eq!(url.method, Method::Http);
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.path, "/_warren/probe");
        let url = ProbeUrl::parse("https://eu.example.net/_warren/probe")?;
        assert_eq!(
            (url.method, url.authority.as_str()),
            (Method::Tcp, "eu.example.net:443")
        );
        assert!(ProbeUrl::parse("ftp://x/").is_err());
        assert!(ProbeUrl::parse("not a url").is_err());
        Ok(())
    }

    fn measured(region: &str, method: Method, ms: &[(u64, u64)]) -> Probe {
        Probe {
            region: region.into(),
            method,
            samples: ms
                .iter()
                .map(|&(connect, total)| Sample {
                    connect: Duration::from_millis(connect),
                    total: (method == Method::Http).then(|| Duration::from_millis(total)),
                })
                .collect(),
            error: None,
        }
    }

    fn unreachable(region: &str) -> Probe {
        Probe {
            region: region.into(),
            method: Method::Http,
            samples: Vec::new(),
            error: Some("cannot connect to 127.0.0.1:9: refused".into()),
        }
    }

    #[test]
    fn the_lowest_median_wins_and_unreachable_regions_never_do() -> Result<(), String> {
        let eu = measured("eu", Method::Http, &[(5, 12), (5, 500), (6, 11)]);
        let us = measured("us", Method::Http, &[(70, 143), (70, 140), (71, 150)]);
        assert_eq!(
            eu.shown(),
            Some(Duration::from_millis(12)),
            "median, not mean"
        );
        assert_eq!(choose(&[us.clone(), eu.clone()])?, "eu");
        assert_eq!(choose(&[unreachable("ap"), us.clone()])?, "us");
        assert_eq!(
            summary_line(&[eu, us, unreachable("ap")], Some("eu")),
            "eu 12 ms · us 143 ms · ap unreachable → eu"
        );
        Ok(())
    }

    #[test]
    fn connect_times_are_compared_when_a_region_could_only_be_timed_by_connect()
    -> Result<(), String> {
        // us's round trip is long but its connect is the fastest.
        let eu = measured("eu", Method::Http, &[(20, 25)]);
        let us = measured("us", Method::Http, &[(10, 90)]);
        let ap = measured("ap", Method::Tcp, &[(15, 0)]);
        assert_eq!(choose(&[eu.clone(), us.clone()])?, "eu");
        assert_eq!(choose(&[eu, us, ap.clone()])?, "us");
        assert_eq!(latency_label(&ap), "15 ms (tcp)");
        Ok(())
    }

    #[test]
    fn nothing_answered_is_one_sentence_naming_each_region() {
        let error = choose(&[unreachable("eu"), unreachable("us")])
            .err()
            .unwrap_or_default();
        assert!(error.contains("eu: cannot connect"), "{error}");
        assert!(error.contains("us: cannot connect"), "{error}");
        assert!(error.contains("--region ID"), "{error}");
        assert!(choose(&[]).is_err());
    }

    #[test]
    fn milliseconds_are_readable() {
        assert_eq!(format_ms(Duration::from_micros(420)), "0.4 ms");
        assert_eq!(format_ms(Duration::from_micros(143_400)), "143 ms");
        assert_eq!(json_ms(Duration::from_micros(1234)), 1.23);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_a_panic() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let target = Target {
            region: "eu".into(),
            probe_url: format!("http://127.0.0.1:{port}/_warren/probe"),
        };
        let probe = probe(&target, 2, Duration::from_millis(500)).await;
        assert!(probe.samples.is_empty());
        let error = probe.error.unwrap_or_default();
        assert!(error.contains("cannot connect"), "{error}");
        Ok(())
    }
}

//! Results: one [`Row`] per (scenario, target), progress lines on stderr, a markdown table with
//! ratios to the direct baseline of the same run, and JSON.

use crate::load::Outcome;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// How a scenario is compared with direct.
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests (or messages) per second: higher is better.
    Rate,
    /// MiB per second: higher is better.
    Throughput,
    /// p99 latency at a fixed rate: lower is better.
    P99,
}

#[derive(Serialize)]
pub struct ProcUse {
    pub role: String,
    pub cpu_s: f64,
    /// The part of `cpu_s` spent in the kernel (stime).
    pub sys_s: f64,
    pub peak_rss_mib: f64,
}

#[derive(Serialize)]
pub struct Row {
    pub scenario: String,
    pub target: String,
    pub metric: Metric,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub req_per_s: f64,
    pub mib_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// CPU of the tunnel's processes (edge + agent, or the peer's server + client).
    pub tunnel_cpu_s: f64,
    pub tunnel_cpu_us_per_req: Option<f64>,
    pub tunnel_cpu_s_per_gib: Option<f64>,
    /// Share of the tunnel's CPU spent in the kernel (system calls, loopback TCP): what no
    /// user-space change removes, short of fewer system calls.
    pub tunnel_kernel_share: Option<f64>,
    pub tunnel_peak_rss_mib: f64,
    pub origin_cpu_s: f64,
    pub generator_cpu_s: f64,
    /// Busy CPU of the whole machine during the run; what the generator, origin and tunnel did
    /// not use went to other processes (or to the kernel's loopback work).
    pub machine_busy_cpu_s: f64,
    pub procs: Vec<ProcUse>,
}

pub struct Usage {
    pub tunnel: Vec<ProcUse>,
    pub origin_cpu: Duration,
    pub generator_cpu: Duration,
    pub machine_busy: Duration,
}

impl Row {
    pub fn new(scenario: &str, target: &str, metric: Metric, o: &Outcome, usage: Usage) -> Row {
        let secs = o.elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| o.hist.value_at_quantile(p) as f64 / 1000.0;
        let tunnel_cpu_s: f64 = usage.tunnel.iter().map(|p| p.cpu_s).sum();
        let tunnel_sys_s: f64 = usage.tunnel.iter().map(|p| p.sys_s).sum();
        let tunneled = !usage.tunnel.is_empty();
        let gib = o.bytes as f64 / (1u64 << 30) as f64;
        Row {
            scenario: scenario.into(),
            target: target.into(),
            metric,
            requests: o.requests,
            errors: o.errors,
            first_error: o.first_error.clone(),
            elapsed_s: secs,
            req_per_s: o.requests as f64 / secs,
            mib_per_s: o.bytes as f64 / secs / (1 << 20) as f64,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            tunnel_cpu_s,
            tunnel_cpu_us_per_req: (tunneled && o.requests > 0 && metric != Metric::Throughput)
                .then(|| tunnel_cpu_s * 1e6 / o.requests as f64),
            tunnel_cpu_s_per_gib: (tunneled && gib > 0.0 && metric == Metric::Throughput)
                .then(|| tunnel_cpu_s / gib),
            tunnel_kernel_share: (tunneled && tunnel_cpu_s > 0.0)
                .then(|| tunnel_sys_s / tunnel_cpu_s),
            tunnel_peak_rss_mib: usage.tunnel.iter().map(|p| p.peak_rss_mib).sum(),
            origin_cpu_s: usage.origin_cpu.as_secs_f64(),
            generator_cpu_s: usage.generator_cpu.as_secs_f64(),
            machine_busy_cpu_s: usage.machine_busy.as_secs_f64(),
            procs: usage.tunnel,
        }
    }

    fn headline(&self) -> f64 {
        match self.metric {
            Metric::Rate => self.req_per_s,
            Metric::Throughput => self.mib_per_s,
            Metric::P99 => self.p99_ms,
        }
    }

    /// One progress line for stderr.
    pub fn progress(&self) -> String {
        let mut s = format!(
            "  {:<12} {:<8} {:>9.0} req/s {:>8.1} MiB/s  p50 {:.3} p99 {:.3} p99.9 {:.3} ms  errors {}",
            self.scenario,
            self.target,
            self.req_per_s,
            self.mib_per_s,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.errors
        );
        if !self.procs.is_empty() {
            let per = match (self.tunnel_cpu_us_per_req, self.tunnel_cpu_s_per_gib) {
                (Some(us), _) => format!("{us:.1} µs/req"),
                (None, Some(g)) => format!("{g:.2} s/GiB"),
                _ => "-".into(),
            };
            let per = match self.tunnel_kernel_share {
                Some(k) => format!("{per}, {:.0} % in the kernel", k * 100.0),
                None => per,
            };
            let _ = write!(
                s,
                "  tunnel CPU {:.2}s ({per}) peak RSS {:.1} MiB",
                self.tunnel_cpu_s, self.tunnel_peak_rss_mib
            );
        }
        let ours = self.tunnel_cpu_s + self.origin_cpu_s + self.generator_cpu_s;
        let _ = write!(
            s,
            "  [machine busy {:.1}s of {:.1}s, ours {:.1}s]",
            self.machine_busy_cpu_s,
            std::thread::available_parallelism().map_or(1, |n| n.get()) as f64 * self.elapsed_s,
            ours
        );
        if let Some(e) = &self.first_error {
            let _ = write!(s, "  first error: {e}");
        }
        s
    }
}

/// The markdown table: every scenario, every target, ratio of the headline figure to direct.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | target | req/s | MiB/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | tunnel CPU µs/req | tunnel CPU s/GiB | tunnel CPU in kernel | tunnel peak RSS MiB | vs direct |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let direct = rows
            .iter()
            .find(|r| r.scenario == row.scenario && r.target == "direct");
        let ratio = match direct {
            Some(d) if d.headline() > 0.0 && row.requests > 0 => {
                let r = row.headline() / d.headline();
                let what = match row.metric {
                    Metric::Rate => "req/s",
                    Metric::Throughput => "MiB/s",
                    Metric::P99 => "p99",
                };
                format!("{r:.2} ({what})")
            }
            _ => "-".into(),
        };
        let opt = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.target,
            row.req_per_s,
            row.mib_per_s,
            row.p50_ms,
            row.p90_ms,
            row.p99_ms,
            row.p999_ms,
            row.errors,
            opt(row.tunnel_cpu_us_per_req, 1),
            opt(row.tunnel_cpu_s_per_gib, 2),
            row.tunnel_kernel_share
                .map_or("-".into(), |k| format!("{:.0} %", k * 100.0)),
            if row.procs.is_empty() {
                "-".into()
            } else {
                format!("{:.1}", row.tunnel_peak_rss_mib)
            },
            ratio
        );
    }
    out
}

/// Memory figures that are not per-request rows (idle RSS, sessions, streams).
#[derive(Serialize, Default)]
pub struct Memory {
    /// Target → RSS of each tunnel process, idle, in MiB.
    pub idle_rss_mib: Vec<(String, Vec<(String, f64)>)>,
    pub idle_sessions: Option<Scale>,
    pub concurrent_streams: Option<Scale>,
}

#[derive(Serialize)]
pub struct Scale {
    pub count: usize,
    pub edge_rss_before_mib: f64,
    pub edge_rss_after_mib: f64,
    pub edge_bytes_per_item: f64,
    pub edge_rss_after_release_mib: f64,
    pub open_seconds: f64,
    pub errors: u64,
    pub note: String,
}

pub fn memory_markdown(m: &Memory) -> String {
    let mut out = String::new();
    for (target, procs) in &m.idle_rss_mib {
        let total: f64 = procs.iter().map(|p| p.1).sum();
        let parts: Vec<String> = procs.iter().map(|(r, v)| format!("{r} {v:.1}")).collect();
        let _ = writeln!(
            out,
            "- idle RSS, {target}: {total:.1} MiB ({})",
            parts.join(", ")
        );
    }
    for (what, s) in [
        ("idle tunnel sessions", &m.idle_sessions),
        ("concurrent visitor streams", &m.concurrent_streams),
    ] {
        if let Some(s) = s {
            let _ = writeln!(
                out,
                "- {} {what}: edge RSS {:.1} → {:.1} MiB = {:.1} KiB each; {:.1} MiB after release; opened in {:.1} s; errors {}{}",
                s.count,
                s.edge_rss_before_mib,
                s.edge_rss_after_mib,
                s.edge_bytes_per_item / 1024.0,
                s.edge_rss_after_release_mib,
                s.open_seconds,
                s.errors,
                if s.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.note)
                }
            );
        }
    }
    out
}

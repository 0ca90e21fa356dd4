//! One run: start the origin and the targets, warm them up, run every scenario on every target
//! (direct first, then Warren, then each peer), then the Warren-only scale scenarios.

use crate::Args;
use crate::load::{self, Exchange, Outcome};
use crate::procstat::{self, CpuMeter};
use crate::report::{self, Memory, Metric, ProcUse, Row, Usage};
use crate::targets::{self, Proc, Target};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

const ALL: &[&str] = &[
    "ka_1k",
    "ka_1m",
    "close_1k",
    "fixed_1k",
    "download",
    "upload",
    "ws_echo",
    "sse",
    "idle_sessions",
    "streams",
];
const MIB: u64 = 1 << 20;

/// Sizes of one run, from `--quick`, `--full`, `--smoke`.
struct Plan {
    duration: Duration,
    download: u64,
    upload: u64,
    sessions: usize,
    streams: usize,
    rate: f64,
    /// Single transfers per target (download, upload).
    transfers: u32,
}

impl Plan {
    fn new(a: &Args) -> Plan {
        let (download, upload, sessions, streams) = if a.smoke {
            (4 * MIB, 4 * MIB, 50, 500)
        } else if a.quick {
            (256 * MIB, 64 * MIB, 1000, 10_000)
        } else if a.full {
            (1024 * MIB, 256 * MIB, 10_000, 100_000)
        } else {
            (1024 * MIB, 256 * MIB, 1000, 10_000)
        };
        Plan {
            duration: a.duration(),
            download,
            upload,
            sessions: a.sessions.unwrap_or(sessions),
            streams: a.streams.unwrap_or(streams),
            rate: if a.smoke { 200.0 } else { a.rate },
            transfers: a
                .transfers
                .unwrap_or(if a.smoke || a.quick { 1 } else { 3 }),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(&args);
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    if let Some(bad) = scenarios.iter().find(|s| !ALL.contains(&s.as_str())) {
        bail!("unknown scenario {bad:?}: choose from {}", ALL.join(", "));
    }
    let work = std::env::temp_dir().join(format!("warren-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    eprintln!("warren-loadtest: logs in {}", work.display());
    match args.tunnel_workers {
        0 => eprintln!("tunnel servers on their default worker threads (one per core)"),
        n => eprintln!("tunnel servers on {n} worker thread(s) each (--tunnel-workers)"),
    }
    let tck = procstat::clock_ticks();

    let origin_log = work.join("origin.log");
    let mut origin = Proc::spawn(
        "origin",
        Command::new(std::env::current_exe()?).args(["origin", "--listen", "127.0.0.1:0"]),
        &origin_log,
    )?;
    let line = targets::wait_for_text(
        &origin_log,
        "origin listening on ",
        &mut origin,
        Duration::from_secs(10),
    )?;
    let origin_addr: SocketAddr = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("origin said {line:?}"))?;
    let mut list = vec![Target {
        name: "direct".into(),
        addr: origin_addr,
        host: origin_addr.to_string(),
        procs: Vec::new(),
    }];
    list.push(start_warren(&args, &plan, origin_addr, &work)?);
    if !args.smoke {
        for peer in &args.peers {
            list.push(start_peer(&args, peer, origin_addr, &work)?);
        }
    }
    let mut memory = Memory::default();
    for t in &list {
        if !t.procs.is_empty() {
            let procs = t
                .procs
                .iter()
                .map(|p| (p.role.clone(), procstat::rss(p.pid()) as f64 / MIB as f64))
                .collect();
            memory.idle_rss_mib.push((t.name.clone(), procs));
        }
    }
    for t in &list {
        let pids: Vec<String> = t
            .procs
            .iter()
            .map(|p| format!("{} pid {}", p.role, p.pid()))
            .collect();
        eprintln!(
            "{} at {} (Host: {}) {}",
            t.name,
            t.addr,
            t.host,
            pids.join(", ")
        );
        warm_up(t).await?;
    }

    let mut rows = Vec::new();
    let me = std::process::id();
    for scenario in scenarios
        .iter()
        .filter(|s| !matches!(s.as_str(), "idle_sessions" | "streams"))
    {
        eprintln!("== {scenario}");
        for t in &list {
            let pids = t.pids();
            let meter = CpuMeter::start(&pids, tck);
            let side = CpuMeter::start(&[origin.pid(), me], tck);
            let busy = procstat::machine_busy_ticks();
            let (metric, outcome) = scenario_run(scenario, t, &plan).await;
            let used = meter.used();
            let side = side.used();
            let busy = procstat::machine_busy_ticks().saturating_sub(busy);
            let usage = Usage {
                tunnel: t
                    .procs
                    .iter()
                    .zip(used)
                    .map(|(p, used)| ProcUse {
                        role: p.role.clone(),
                        cpu_s: used.cpu.as_secs_f64(),
                        sys_s: used.sys.as_secs_f64(),
                        peak_rss_mib: procstat::peak_rss(p.pid()) as f64 / MIB as f64,
                    })
                    .collect(),
                origin_cpu: side.first().copied().unwrap_or_default().cpu,
                generator_cpu: side.get(1).copied().unwrap_or_default().cpu,
                machine_busy: Duration::from_millis(busy * 1000 / tck.max(1)),
            };
            let row = Row::new(scenario, &t.name, metric, &outcome, usage);
            eprintln!("{}", row.progress());
            rows.push(row);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let warren = list
        .iter()
        .find(|t| t.name == "warren" && !t.procs.is_empty());
    if let Some(w) = warren {
        if scenarios.iter().any(|s| s == "idle_sessions") {
            eprintln!("== idle_sessions ({})", plan.sessions);
            memory.idle_sessions = Some(crate::scale::idle_sessions(w, plan.sessions).await);
        }
        if scenarios.iter().any(|s| s == "streams") {
            eprintln!("== streams ({})", plan.streams);
            memory.concurrent_streams = Some(crate::scale::streams(w, plan.streams).await);
        }
    }

    let table = report::markdown(&rows);
    let mem = report::memory_markdown(&memory);
    println!("{table}\n{mem}");
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "duration_s": plan.duration.as_secs_f64(),
            "tunnel_workers": args.tunnel_workers,
            "rows": rows,
            "memory": memory,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = rows
        .iter()
        .any(|r| r.errors > 0 && r.target != "bore" && r.target != "rathole")
        || memory.idle_sessions.as_ref().is_some_and(|s| s.errors > 0)
        || memory
            .concurrent_streams
            .as_ref()
            .is_some_and(|s| s.errors > 0);
    if failed {
        eprintln!(
            "warren-loadtest: some requests failed (see first_error above and {})",
            work.display()
        );
        if args.smoke {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn scenario_run(scenario: &str, t: &Target, plan: &Plan) -> (Metric, Outcome) {
    let d = plan.duration;
    let get = |size, close| Arc::new(Exchange::get(t.addr, &t.host, size, close));
    match scenario {
        "ka_1k" => (
            Metric::Rate,
            load::closed_loop(get(1024, false), 50, d).await,
        ),
        "ka_1m" => (
            Metric::Throughput,
            load::closed_loop(get(MIB, false), 50, d).await,
        ),
        "close_1k" => (
            Metric::Rate,
            load::closed_loop(get(1024, true), 10, d).await,
        ),
        "fixed_1k" => (
            Metric::P99,
            load::open_loop(get(1024, false), 10, plan.rate, d).await,
        ),
        "download" => {
            let mut all = load::download(t.addr, &t.host, plan.download).await;
            for _ in 1..plan.transfers {
                all.then(load::download(t.addr, &t.host, plan.download).await);
            }
            (Metric::Throughput, all)
        }
        "upload" => {
            let mut all = load::upload(t.addr, &t.host, plan.upload).await;
            for _ in 1..plan.transfers {
                all.then(load::upload(t.addr, &t.host, plan.upload).await);
            }
            (Metric::Throughput, all)
        }
        "ws_echo" => (
            Metric::Rate,
            crate::ws::echo(t.addr, &t.host, 10, 64, d).await,
        ),
        _ => {
            let ex = Exchange {
                addr: t.addr,
                request: crate::client::request("GET", "/sse?n=100", &t.host, ""),
                expect_body: crate::origin::sse_len(100),
                close: false,
            };
            (Metric::Rate, load::closed_loop(Arc::new(ex), 10, d).await)
        }
    }
}

fn start_warren(
    args: &Args,
    plan: &Plan,
    origin: SocketAddr,
    work: &std::path::Path,
) -> anyhow::Result<Target> {
    if let Some(addr) = args.target_url {
        let host = args.target_host.clone().context(
            "--target-url needs --target-host (the tunnel's host, e.g. bench.localhost:8080)",
        )?;
        return Ok(Target {
            name: "warren".into(),
            addr,
            host,
            procs: Vec::new(),
        });
    }
    let bin = targets::warren_bin_dir(args.warren_bin_dir.as_ref());
    if !bin.join("warren-edge").exists() || !bin.join("warren").exists() {
        bail!(
            "no warren-edge and warren in {}: run `cargo build --release -p warren-edge -p warren-cli` or pass --warren-bin-dir",
            bin.display()
        );
    }
    eprintln!("warren binaries from {}", bin.display());
    let max_streams = u32::try_from(plan.streams + 1000)
        .unwrap_or(u32::MAX)
        .max(10_000);
    targets::warren(
        &bin,
        origin,
        work,
        max_streams,
        args.tunnel_workers,
        &args.agent_arg,
    )
}

fn start_peer(
    args: &Args,
    peer: &str,
    origin: SocketAddr,
    work: &std::path::Path,
) -> anyhow::Result<Target> {
    let dir = args.peers_dir.clone().unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
            });
        cache.join("warren-peers/bin")
    });
    let bin = dir.join(peer);
    if !bin.exists() {
        bail!(
            "no {} : install the peers with `bash /work/shared/bench/install_peers.sh` (cargo install --locked --root ~/.cache/warren-peers bore-cli; cargo install --root ~/.cache/warren-peers rathole) or pass --peers-dir",
            bin.display()
        );
    }
    match peer {
        "bore" => targets::bore(&bin, origin, work, args.tunnel_workers),
        "rathole" => targets::rathole(&bin, origin, work, args.tunnel_workers),
        other => bail!("unknown peer {other:?}: use bore or rathole"),
    }
}

/// A few requests until the target answers (rathole's data channels come up after its port).
async fn warm_up(t: &Target) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..40 {
        let o = load::closed_loop(
            Arc::new(Exchange::get(t.addr, &t.host, 1024, false)),
            4,
            Duration::from_millis(300),
        )
        .await;
        if o.errors == 0 && o.requests > 0 {
            let big = load::closed_loop(
                Arc::new(Exchange::get(t.addr, &t.host, MIB, false)),
                2,
                Duration::from_millis(300),
            )
            .await;
            if big.errors == 0 {
                return Ok(());
            }
            last = big.first_error;
        } else {
            last = o.first_error;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "{} does not serve requests: {}",
        t.name,
        last.unwrap_or_default()
    )
}

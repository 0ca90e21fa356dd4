//! `warren-loadtest`: measures Warren against a direct connection to the same origin, and
//! against peer tunnels (bore, rathole), in one run, so ratios hold on a noisy machine.
//!
//! # Layout
//! - `main.rs`: the command line; `origin` runs the origin server (a child of the load test).
//! - `run.rs`: starts the origin and the targets, runs every scenario on every target.
//! - `targets.rs`: direct, Warren (edge + agent), bore, rathole as child processes.
//! - `origin.rs`: the origin, a lean hyper server (`/bytes/N`, `/upload`, `/sse`, `/ws`).
//! - `client.rs`: a lean HTTP/1.1 client on raw TCP (prebuilt request, minimal parsing).
//! - `load.rs`: closed loop, open loop with coordinated-omission correction, bulk transfers.
//! - `ws.rs`: WebSocket echo load.
//! - `sessions.rs`: thousands of agent sessions and 100,000 visitor streams, in-process.
//! - `procstat.rs`: CPU (utime + stime) and peak RSS (VmHWM) of child processes.
//! - `report.rs`: progress lines, the markdown table with ratios to direct, JSON.
#![forbid(unsafe_code)]

mod client;
mod load;
mod origin;
mod procstat;
mod report;
mod run;
mod scale;
mod sessions;
mod targets;
mod ws;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Load test for Warren: direct vs Warren vs peer tunnels, in one run.
#[derive(Parser)]
#[command(name = "warren-loadtest")]
pub struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,

    /// Short run: 3 s per scenario, smaller bulk transfers, fewer sessions and streams.
    #[arg(long)]
    pub quick: bool,

    /// Full scale: 10,000 idle sessions and 100,000 concurrent streams.
    #[arg(long)]
    pub full: bool,

    /// CI smoke test: seconds in all, direct + Warren, tiny scenarios; exits non-zero only if
    /// requests fail, never on figures.
    #[arg(long)]
    pub smoke: bool,

    /// Seconds per throughput scenario (default 10, quick 3, smoke 1).
    #[arg(long)]
    pub duration: Option<f64>,

    /// Comma-separated scenarios (default: all): ka_1k, ka_1m, close_1k, fixed_1k,
    /// download, upload, ws_echo, sse, idle_sessions, streams.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,

    /// Comma-separated peer tunnels to measure too: bore, rathole.
    #[arg(long, value_delimiter = ',', value_parser = ["bore", "rathole"])]
    pub peers: Vec<String>,

    /// Where the peers' binaries are (as /work/shared/bench/install_peers.sh installs them).
    #[arg(long)]
    pub peers_dir: Option<PathBuf>,

    /// Directory with `warren-edge` and `warren` (default: the release dir of the target dir).
    #[arg(long)]
    pub warren_bin_dir: Option<PathBuf>,

    /// Worker threads of each tunnel's server process: Warren's edge (`--workers`) and the
    /// peers' servers and clients (`TOKIO_WORKER_THREADS`; Warren's agent always runs on one).
    /// 0 (the default) leaves each program its own default, one per core; every tunnel gets
    /// the same. One worker costs less CPU per small request on a 2-core machine shared with
    /// the generator and the origin, with throughput within noise of the default
    /// (docs/performance.md, "Worker threads").
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub tunnel_workers: u16,

    /// Extra argument for the `warren http` agent, repeatable (e.g. `--agent-arg=--quiet` to
    /// measure without per-request log lines).
    #[arg(long, allow_hyphen_values = true)]
    pub agent_arg: Vec<String>,

    /// Measure an already running Warren tunnel at this address instead of starting one
    /// (send `--target-host` as Host). CPU and memory are then not measured.
    #[arg(long)]
    pub target_url: Option<SocketAddr>,

    /// Host header for `--target-url`, e.g. `bench.localhost:8080`.
    #[arg(long)]
    pub target_host: Option<String>,

    /// Write machine-readable results here.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Generator threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// Idle sessions to open (default 1,000; 10,000 with --full).
    #[arg(long)]
    pub sessions: Option<usize>,

    /// Concurrent visitor streams to hold (default 10,000; 100,000 with --full).
    #[arg(long)]
    pub streams: Option<usize>,

    /// Fixed rate of the fixed_1k scenario, requests per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Times the single-transfer scenarios (download, upload) run on each target, one after
    /// another; the row gives all bytes over all time (default 3, 1 with --quick or --smoke).
    /// One transfer of a second or two is the noisiest figure of a run.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub transfers: Option<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the origin server (used by the load test itself).
    Origin {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

impl Args {
    pub fn duration(&self) -> Duration {
        let default = if self.smoke {
            1.0
        } else if self.quick {
            3.0
        } else {
            10.0
        };
        Duration::from_secs_f64(self.duration.unwrap_or(default).max(0.1))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Cmd::Origin { listen }) = args.command {
        return origin_main(listen);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run::run(args)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warren-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The origin runs on one thread, like a one-worker nginx.
fn origin_main(listen: SocketAddr) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                println!("origin listening on {}", listener.local_addr()?);
                origin::serve(listener).await
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("origin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::Parser as _;

    #[test]
    fn peers_are_checked_when_the_arguments_are_read() {
        let Err(error) = Args::try_parse_from(["warren-loadtest", "--peers", "bore,frp"]) else {
            panic!("an unknown peer was accepted");
        };
        let text = error.to_string();
        assert!(text.contains("'frp'"), "{text}");
        assert!(text.contains("bore") && text.contains("rathole"), "{text}");
        let Ok(args) = Args::try_parse_from(["warren-loadtest", "--peers", "bore,rathole"]) else {
            panic!("both peers refused");
        };
        assert_eq!(args.peers, ["bore", "rathole"]);
    }

    #[test]
    fn tunnel_workers_beyond_the_range_are_refused() {
        let Err(error) = Args::try_parse_from(["warren-loadtest", "--tunnel-workers", "5000"])
        else {
            panic!("5000 workers accepted");
        };
        assert!(error.to_string().contains("0..=1024"), "{error}");
    }
}

//! The systems under test: the origin itself (direct), Warren (edge + agent), and the peer
//! tunnels bore and rathole, each started as child processes on 127.0.0.1 and killed on drop.

use anyhow::{Context, bail};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed (and reaped) when dropped.
pub struct Proc {
    pub role: String,
    child: Child,
}

impl Proc {
    pub fn spawn(role: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(log).with_context(|| format!("creating {log:?}"))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {role} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            role: role.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited early ({status})", self.role);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One way to reach the origin.
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    /// The `Host` header visitors send.
    pub host: String,
    /// The tunnel's processes (empty for direct).
    pub procs: Vec<Proc>,
}

impl Target {
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }
}

/// A port the OS reports free now. For tools that cannot report the port they bound, this is
/// the only option; the race with other programs is accepted on a benchmark machine.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_port(addr: SocketAddr, procs: &mut [Proc], within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if Instant::now() > deadline {
            bail!("{addr} did not accept connections within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `file` contains `needle`.
pub fn wait_for_text(
    file: &Path,
    needle: &str,
    proc: &mut Proc,
    within: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_string());
        }
        proc.check_alive()
            .with_context(|| format!("see {}", file.display()))?;
        if Instant::now() > deadline {
            bail!("no {needle:?} in {} within {within:?}", file.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where the Warren binaries are: `--warren-bin-dir`, else next to the load test itself (same
/// profile: `cargo run --release` finds the release binaries, `cargo run` the debug ones), else
/// `$CARGO_TARGET_DIR/release`.
pub fn warren_bin_dir(explicit: Option<&PathBuf>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.clone();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(dir) = beside.filter(|d| d.join("warren-edge").exists()) {
        return dir;
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("release")
}

/// `var=workers` for a tunnel process, or nothing for its own default (`--tunnel-workers 0`).
/// Passed through the environment: an older edge without `--workers` ignores it.
fn workers_env(var: &'static str, workers: u16) -> Option<(&'static str, String)> {
    (workers > 0).then(|| (var, workers.to_string()))
}

pub const TOKEN: &str = "loadtest-token";
pub const SUBDOMAIN: &str = "bench";

/// Starts an edge and one `warren http` agent in front of `origin`.
pub fn warren(
    bin: &Path,
    origin: SocketAddr,
    work: &Path,
    max_streams: u32,
    workers: u16,
    agent_args: &[String],
) -> anyhow::Result<Target> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let edge = Proc::spawn(
        "warren-edge",
        Command::new(bin.join("warren-edge"))
            .args(["--listen", &addr.to_string(), "--token", TOKEN])
            // Limits through the environment: an unknown variable is ignored, where a renamed
            // flag would stop the edge.
            .env("WARREN_EDGE_MAX_SESSIONS", "20000")
            .env("WARREN_EDGE_MAX_CONNECTIONS", "200000")
            .env("WARREN_EDGE_MAX_STREAMS", max_streams.to_string())
            .envs(workers_env("WARREN_EDGE_WORKERS", workers))
            .env("RUST_LOG", "warn"),
        &work.join("edge.log"),
    )?;
    let mut procs = vec![edge];
    wait_port(addr, &mut procs, Duration::from_secs(15))?;
    let agent_log = work.join("agent.out");
    let mut agent = Proc::spawn(
        "warren (agent)",
        Command::new(bin.join("warren"))
            .args([
                "http",
                &origin.port().to_string(),
                "--local-host",
                "127.0.0.1",
            ])
            .args(["--edge", &format!("http://{addr}"), "--token", TOKEN])
            .args(["--subdomain", SUBDOMAIN, "--json"])
            .args(agent_args),
        &agent_log,
    )?;
    wait_for_text(
        &agent_log,
        "tunnel_ready",
        &mut agent,
        Duration::from_secs(15),
    )?;
    procs.push(agent);
    Ok(Target {
        name: "warren".into(),
        addr,
        host: format!("{SUBDOMAIN}.localhost:{port}"),
        procs,
    })
}

/// bore server + bore local (bore's control port 7835 is fixed: one bore at a time).
pub fn bore(bin: &Path, origin: SocketAddr, work: &Path, workers: u16) -> anyhow::Result<Target> {
    let port = free_port()?;
    let server = Proc::spawn(
        "bore server",
        Command::new(bin)
            .args([
                "server",
                "--bind-addr",
                "127.0.0.1",
                "--min-port",
                "1024",
                "--max-port",
                "65535",
            ])
            .envs(workers_env("TOKIO_WORKER_THREADS", workers))
            .env("RUST_LOG", "warn"),
        &work.join("bore-server.log"),
    )?;
    let mut procs = vec![server];
    wait_port(
        ([127, 0, 0, 1], 7835).into(),
        &mut procs,
        Duration::from_secs(10),
    )?;
    procs.push(Proc::spawn(
        "bore local",
        Command::new(bin)
            .args([
                "local",
                &origin.port().to_string(),
                "-l",
                "127.0.0.1",
                "--to",
                "127.0.0.1",
            ])
            .args(["-p", &port.to_string()])
            .envs(workers_env("TOKIO_WORKER_THREADS", workers))
            .env("RUST_LOG", "warn"),
        &work.join("bore-local.log"),
    )?);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_port(addr, &mut procs, Duration::from_secs(10))?;
    Ok(Target {
        name: "bore".into(),
        addr,
        host: addr.to_string(),
        procs,
    })
}

/// rathole server + client, configured by TOML files in `work`.
pub fn rathole(
    bin: &Path,
    origin: SocketAddr,
    work: &Path,
    workers: u16,
) -> anyhow::Result<Target> {
    let (ctl, port) = (free_port()?, free_port()?);
    let server_toml = work.join("rathole-server.toml");
    let client_toml = work.join("rathole-client.toml");
    std::fs::write(
        &server_toml,
        format!(
            "[server]\nbind_addr = \"127.0.0.1:{ctl}\"\ndefault_token = \"bench\"\n\
             [server.services.http]\nbind_addr = \"127.0.0.1:{port}\"\n"
        ),
    )?;
    std::fs::write(
        &client_toml,
        format!(
            "[client]\nremote_addr = \"127.0.0.1:{ctl}\"\ndefault_token = \"bench\"\n\
             [client.services.http]\nlocal_addr = \"{origin}\"\n"
        ),
    )?;
    let server = Proc::spawn(
        "rathole server",
        Command::new(bin)
            .arg("-s")
            .arg(&server_toml)
            .envs(workers_env("TOKIO_WORKER_THREADS", workers))
            .env("RUST_LOG", "warn"),
        &work.join("rathole-server.log"),
    )?;
    let mut procs = vec![server];
    wait_port(
        ([127, 0, 0, 1], ctl).into(),
        &mut procs,
        Duration::from_secs(10),
    )?;
    procs.push(Proc::spawn(
        "rathole client",
        Command::new(bin)
            .arg("-c")
            .arg(&client_toml)
            .envs(workers_env("TOKIO_WORKER_THREADS", workers))
            .env("RUST_LOG", "warn"),
        &work.join("rathole-client.log"),
    )?);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_port(addr, &mut procs, Duration::from_secs(10))?;
    // rathole's server listens before the client's data channels are up: give it a moment to
    // finish the handshake, checked by a real request below (see `warm_up` in main).
    Ok(Target {
        name: "rathole".into(),
        addr,
        host: addr.to_string(),
        procs,
    })
}

//! Real Redis servers for tests: a private `redis-server` on a free loopback port (nothing on
//! disk), or a Redis Cluster of several. Killed when dropped.
//!
//! Tests never mock Redis. If `redis-server` is not installed, [`RedisServer::start`] fails
//! with the command that installs it.

use anyhow::{Context, bail};
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "redis-server is not installed: run `apt-get install -y redis-server redis-tools` \
     (Debian/Ubuntu) or `brew install redis` (macOS), then run the tests again";

/// One `redis-server` process.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a standalone server and waits until it answers.
    pub fn start() -> anyhow::Result<RedisServer> {
        RedisServer::spawn(&[])
    }

    fn spawn(extra: &[&str]) -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "warren-redis-{}-{port}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).context("cannot create a directory for redis-server")?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &dir.to_string_lossy()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::anyhow!(INSTALL),
                _ => anyhow::anyhow!("cannot start redis-server: {e}"),
            })?;
        let server = RedisServer { child, port, dir };
        server.wait_until_ready()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server and starts an empty one on the same port: what an edge sees when
    /// Redis restarts without persistence.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port.to_string();
        self.child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot restart redis-server")?;
        self.wait_until_ready()
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        redis_cli(self.port, args)
    }

    fn wait_until_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.cli(&["PING"]).is_ok_and(|out| out.trim() == "PONG")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `masters` servers (no replicas), all slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> anyhow::Result<RedisCluster> {
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(RedisServer::spawn(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redis_cli(nodes[0].port, &args).context("redis-cli --cluster create failed")?;
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// `redis+cluster://` URL naming every node, as the edge's `--redis-url` takes it.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    fn wait_until_ok(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let all_ok = self.nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if all_ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the Redis Cluster did not reach cluster_state:ok within 20 s")
    }
}

fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(INSTALL),
            _ => anyhow::anyhow!("cannot run redis-cli: {e}"),
        })?;
    if !output.status.success() {
        bail!(
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A port free right now (the OS picks it; Redis cannot be told to pick one itself).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = StdListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

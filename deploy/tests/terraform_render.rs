//! The rendered configuration runs: Terraform renders the two-region fixture
//! (`tests/fixtures/two-regions.tf`) with `deploy/terraform/modules/topology`; each host's
//! cloud-init is read back, and real `warren-control` and `warren-edge` processes start with
//! exactly its unit's `ExecStart=` — through the rendered `warren-run` launcher, with the
//! rendered environment file, secrets map and `LoadCredential=` files — with only addresses
//! rewritten to loopback (ports chosen by the OS). A real `warren` agent logs in to control,
//! opens a tunnel in region eu, and a visitor gets the local service's answer through every
//! edge (the other two relay to the one holding the session).
//!
//! Needs: terraform (the test fails naming what to install), the three binaries
//! (`cargo build -p warren-edge -p warren-control -p warren-cli`), redis-server, and PostgreSQL
//! at `$WARREN_TEST_POSTGRES` (as `./scripts/test` sets up).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use sqlx::Connection as _;
use warren_deploy::{CloudInit, Unit, env_file, help_env_names};
use warren_testkit::client;
use warren_testkit::origin::Origin;
use warren_testkit::redis::RedisServer;

const DEADLINE: Duration = Duration::from_secs(30);
const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Environment variables the units set that are not the binaries' own: the launcher's,
/// tracing's and the ACME hook's.
const NOT_THE_BINARYS: [&str; 3] = ["RUST_LOG", "WARREN_SECRET_FETCH", "WARREN_DNS_API_TOKEN"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_two_region_configuration_serves_a_tunnel_through_every_edge()
-> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    // The services outlive the body, so their logs can be shown if it fails.
    let mut services = Vec::new();
    let result = run_rendered(scratch.path(), &mut services).await;
    if result.is_err() {
        FAILING.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    drop(services);
    result
}

async fn run_rendered(scratch: &Path, services: &mut Vec<Process>) -> anyhow::Result<()> {
    let topology = render(scratch)?;
    let hosts = topology["hosts"]
        .as_object()
        .context("no hosts in the topology")?;
    ensure!(
        hosts.keys().map(String::as_str).collect::<Vec<_>>()
            == ["control", "edge-eu-0", "edge-eu-1", "edge-us-0"],
        "hosts: {:?}",
        hosts.keys()
    );

    // The services the hosts point at, on this machine.
    let redis = RedisServer::start()?;
    let (database_url, _database) = create_database().await?;
    let origin = Origin::start().await?;

    let mut rewrite = Rewrite::new(&topology, &redis.url())?;
    let secrets = Secrets::generate(database_url);

    // Control: an operator account first (through the same launcher and secrets), then serve.
    let control = HostRun::prepare(scratch, "control", &hosts["control"], &mut rewrite)?;
    control.check_env_names(&binary("warren-control")?)?;
    let token = control.create_account(&secrets)?;
    services.push(control.start(&secrets)?);
    let control_url = rewrite.control_url()?;
    let control_addr = rewrite.control_addr()?;
    wait_ready(control_addr, "127.0.0.1", "/healthz", services.last_mut()).await?;

    let mut edges = Vec::new();
    for name in ["edge-eu-0", "edge-eu-1", "edge-us-0"] {
        let edge = HostRun::prepare(scratch, name, &hosts[name], &mut rewrite)?;
        if name == "edge-eu-0" {
            edge.check_env_names(&binary("warren-edge")?)?;
        }
        services.push(edge.start(&secrets)?);
        let addr = edge.public_addr()?;
        wait_ready(addr, &addr.ip().to_string(), "/readyz", services.last_mut()).await?;
        edges.push((name, addr));
    }

    // A developer: log in to control, `warren http PORT --region eu`.
    let home = tempfile::tempdir()?;
    run_agent_command(
        home.path(),
        &["login", "--control", &control_url, "--token", &token],
    )?;
    let mut agent = Agent::spawn(
        home.path(),
        &[
            "http",
            &origin.port().to_string(),
            "--local-host",
            "127.0.0.1",
            "--region",
            "eu",
            "--json",
        ],
    )?;
    let public_url = agent.event("tunnel_ready")?["public_url"]
        .as_str()
        .context("tunnel_ready without public_url")?
        .to_string();
    let host = public_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .with_context(|| format!("unexpected public URL {public_url}"))?
        .to_string();
    ensure!(
        host.ends_with(".eu.warren.test"),
        "the tunnel is in region eu: {public_url}"
    );

    for (name, addr) in &edges {
        let body = get_within(*addr, &host, "/hello").await?;
        ensure!(
            body == "hello from origin",
            "{name} answered {body:?} for {host}"
        );
        println!("{name} ({addr}): GET http://{host}/hello -> 200 {body:?}");
    }
    Ok(())
}

/// Copies the fixture next to a scratch directory, points it at the module, applies it.
fn render(scratch: &Path) -> anyhow::Result<Value> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR"));
    let module = deploy.join("terraform/modules/topology").canonicalize()?;
    let fixture = std::fs::read_to_string(deploy.join("tests/fixtures/two-regions.tf"))?;
    let root = scratch.join("root");
    std::fs::create_dir_all(&root)?;
    std::fs::write(
        root.join("main.tf"),
        fixture.replace("TOPOLOGY_MODULE", &module.to_string_lossy()),
    )?;
    let outputs = warren_deploy::apply_outputs(&root)?;
    Ok(outputs["topology"]["value"].clone())
}

/// The binary next to the running test (`target/<profile>/NAME`).
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("cannot tell the target directory from {exe:?}"))?;
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{} does not exist: run `cargo build -p warren-edge -p warren-control -p warren-cli` \
         (same profile and target directory as the tests), then run the tests again",
        path.display()
    );
    Ok(path)
}

/// Maps the addresses the topology renders to loopback ones: each host gets its own
/// 127.0.0.N, each port it listens on a port the OS picks, and the external services
/// (Redis) the ones this test started. Public names (control's URL, the regions' tunnel and
/// probe URLs) point at control and at each region's first edge.
struct Rewrite {
    /// Host name → its loopback address.
    ips: BTreeMap<String, Ipv4Addr>,
    /// Host name → its private address in the topology.
    private: BTreeMap<String, String>,
    /// "ADDRESS:PORT" as rendered (private or wildcard, per host) → loopback socket address.
    sockets: BTreeMap<(String, String), SocketAddr>,
    /// Whole-string replacements applied to every argument, longest first.
    replacements: Vec<(String, String)>,
    topology: Value,
}

impl Rewrite {
    fn new(topology: &Value, redis_url: &str) -> anyhow::Result<Rewrite> {
        let hosts = topology["hosts"].as_object().context("no hosts")?;
        let mut ips = BTreeMap::new();
        let mut private = BTreeMap::new();
        for (index, (name, host)) in hosts.iter().enumerate() {
            let last = u8::try_from(20 + index).context("too many hosts")?;
            ips.insert(name.clone(), Ipv4Addr::new(127, 0, 0, last));
            private.insert(
                name.clone(),
                host["private_ip"]
                    .as_str()
                    .context("no private_ip")?
                    .to_string(),
            );
        }
        let redis = redis_url
            .strip_prefix("redis://")
            .context("unexpected Redis URL")?;
        let rendered_redis = topology["control"]["redis_url"]
            .as_str()
            .and_then(|url| url.strip_prefix("redis://"))
            .context("the fixture renders a redis:// URL")?;
        let mut rewrite = Rewrite {
            ips,
            private,
            sockets: BTreeMap::new(),
            replacements: vec![(rendered_redis.to_string(), redis.to_string())],
            topology: topology.clone(),
        };
        rewrite.public_names()?;
        Ok(rewrite)
    }

    /// The loopback address for `addr` (as a listen flag of `host` renders it), chosen once.
    fn listen(&mut self, host: &str, addr: &str) -> anyhow::Result<SocketAddr> {
        let key = (host.to_string(), addr.to_string());
        if let Some(found) = self.sockets.get(&key) {
            return Ok(*found);
        }
        let ip = *self.ips.get(host).context("unknown host")?;
        let port = addr.rsplit(':').next().context("no port")?;
        let free = std::net::TcpListener::bind((ip, 0))?.local_addr()?;
        self.sockets.insert(key, free);
        // Other hosts reach a listener by the host's private address and the same port.
        let private = format!("{}:{port}", self.private[host]);
        self.replacements.push((private, free.to_string()));
        Ok(free)
    }

    /// Public names → loopback URLs, once every listener is known.
    fn public_names(&mut self) -> anyhow::Result<()> {
        let regions = self.topology["regions"]
            .as_object()
            .context("no regions")?
            .clone();
        for region in regions.values() {
            let first_edge = region["edges"][0].as_str().context("no edges")?.to_string();
            let addr = self.public_socket(&first_edge)?;
            for key in ["tunnel_url", "probe_url"] {
                let url = region[key].as_str().context("no url")?;
                let (scheme, rest) = url.split_once("://").context("no scheme")?;
                let name = rest.split('/').next().unwrap_or(rest);
                self.replacements
                    .push((format!("{scheme}://{name}"), format!("{scheme}://{addr}")));
            }
        }
        let control = self.control_addr()?;
        let public = self.topology["control"]["public_url"]
            .as_str()
            .context("no control public_url")?
            .to_string();
        self.replacements
            .push((public, format!("http://{control}")));
        Ok(())
    }

    fn public_socket(&mut self, host: &str) -> anyhow::Result<SocketAddr> {
        let http = self.topology["hosts"][host]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|arg| arg.strip_prefix("--listen="))
            .with_context(|| format!("{host} has no --listen"))?
            .to_string();
        self.listen(host, &http)
    }

    fn control_addr(&mut self) -> anyhow::Result<SocketAddr> {
        let listen = self.topology["hosts"]["control"]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|arg| arg.strip_prefix("--listen="))
            .context("control has no --listen")?
            .to_string();
        self.listen("control", &listen)
    }

    fn control_url(&mut self) -> anyhow::Result<String> {
        Ok(format!("http://{}", self.control_addr()?))
    }

    /// `arg` of `host` with every rendered address replaced.
    fn apply(&mut self, host: &str, arg: &str) -> anyhow::Result<String> {
        const LISTENS: [&str; 5] = [
            "--listen=",
            "--tunnel-listen=",
            "--relay-listen=",
            "--admin-listen=",
            "--tls-listen=",
        ];
        for flag in LISTENS {
            if let Some(addr) = arg.strip_prefix(flag) {
                return Ok(format!("{flag}{}", self.listen(host, addr)?));
            }
        }
        // Longest first, so a URL is replaced before an address inside it.
        let mut replacements = self.replacements.clone();
        replacements.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let mut out = arg.to_string();
        for (from, to) in &replacements {
            out = out.replace(from.as_str(), to);
        }
        Ok(out)
    }
}

/// The secrets an operator would have put where the `LoadCredential=` lines point.
struct Secrets(BTreeMap<&'static str, String>);

impl Secrets {
    fn generate(database_url: String) -> Secrets {
        let random = || format!("{:032x}", rand_u128());
        Secrets(BTreeMap::from([
            ("edge_secret", random()),
            ("relay_key", random()),
            ("database_url", database_url),
        ]))
    }
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut value = 0u128;
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(value);
        value = (value << 64) | u128::from(hasher.finish());
    }
    value
}

/// One host's rendered service, laid out in a scratch directory: the launcher, the secrets
/// map and the environment file from its cloud-init, and its command line rewritten.
struct HostRun {
    name: String,
    dir: PathBuf,
    unit: Unit,
    program: PathBuf,
    /// ExecStart= after the program, rewritten.
    args: Vec<String>,
    environment: Vec<(String, String)>,
    secret_names: Vec<String>,
    public_addr: Option<SocketAddr>,
}

impl HostRun {
    fn prepare(
        scratch: &Path,
        name: &str,
        host: &Value,
        rewrite: &mut Rewrite,
    ) -> anyhow::Result<HostRun> {
        let role = host["role"].as_str().context("no role")?;
        let cloud_init = CloudInit::parse(host["cloud_init"].as_str().context("no cloud_init")?)?;
        let unit =
            Unit::parse(cloud_init.file(&format!("/etc/systemd/system/warren-{role}.service"))?)?;
        let dir = scratch.join(name);
        std::fs::create_dir_all(dir.join("credentials"))?;

        // ExecStart = warren-run MAP PROGRAM ARGS...
        let [launcher, map, program, args @ ..] = unit.exec_start.as_slice() else {
            bail!("{name}: ExecStart= is not warren-run MAP PROGRAM ...");
        };
        let launcher_copy = dir.join("warren-run");
        std::fs::write(&launcher_copy, cloud_init.file(launcher)?)?;
        std::fs::set_permissions(&launcher_copy, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(dir.join("secrets.map"), cloud_init.file(map)?)?;
        let secret_names = env_file(cloud_init.file(map)?)?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        let program_name = Path::new(program)
            .file_name()
            .context("program has no file name")?
            .to_string_lossy()
            .into_owned();
        ensure!(
            program == &format!("/usr/local/bin/{program_name}")
                && cloud_init
                    .runcmd
                    .iter()
                    .any(|cmd| cmd.last() == Some(program)),
            "{name}: cloud-init must install {program} before the unit starts it"
        );

        let mut environment = Vec::new();
        for path in &unit.environment_files {
            environment.extend(env_file(cloud_init.file(path)?)?);
        }
        let args = args
            .iter()
            .map(|arg| rewrite.apply(name, arg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let public_addr = (role == "edge")
            .then(|| rewrite.public_socket(name))
            .transpose()?;
        Ok(HostRun {
            name: name.to_string(),
            dir,
            unit,
            program: binary(&program_name)?,
            args,
            environment,
            secret_names,
            public_addr,
        })
    }

    fn public_addr(&self) -> anyhow::Result<SocketAddr> {
        self.public_addr.context("not an edge")
    }

    /// Every variable the environment file and the secrets map set is one the binary reads
    /// (an unknown one would be ignored silently, so it fails here).
    fn check_env_names(&self, program: &Path) -> anyhow::Result<()> {
        let mut help = Command::new(program);
        if self.name == "control" {
            help.args(["serve", "--help"]);
        } else {
            help.arg("--help");
        }
        let output = warren_deploy::output_within(&mut help, DEADLINE)?;
        let known = help_env_names(&String::from_utf8_lossy(&output.stdout));
        ensure!(known.len() > 5, "{}: no env names in --help", self.name);
        for name in self
            .environment
            .iter()
            .map(|(key, _)| key)
            .chain(&self.secret_names)
        {
            ensure!(
                known.contains(name) || NOT_THE_BINARYS.contains(&name.as_str()),
                "{}: {name} is not an environment variable {} reads",
                self.name,
                program.display()
            );
        }
        Ok(())
    }

    /// The command systemd would run: the launcher, with the unit's environment and a
    /// credentials directory holding what `LoadCredential=` loads.
    fn command(&self, secrets: &Secrets, extra: Option<&[&str]>) -> anyhow::Result<Command> {
        let credentials = self.dir.join("credentials");
        for (name, _path) in &self.unit.credentials {
            let value = secrets
                .0
                .get(name.as_str())
                .with_context(|| format!("{}: no test value for credential {name}", self.name))?;
            std::fs::write(credentials.join(name), format!("{value}\n"))?;
        }
        let mut command = Command::new(self.dir.join("warren-run"));
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .arg(self.dir.join("secrets.map"))
            .arg(&self.program);
        match extra {
            Some(args) => command.args(args),
            None => command.args(&self.args),
        };
        Ok(command)
    }

    /// `warren-control admin create-account` as an operator would run it on the host; the token.
    fn create_account(&self, secrets: &Secrets) -> anyhow::Result<String> {
        let mut command = self.command(
            secrets,
            Some(&["admin", "create-account", "--email", "ops@warren.test"][..]),
        )?;
        let output = warren_deploy::output_within(&mut command, DEADLINE)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "create-account failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("token (shown once, keep it): "))
            .map(str::to_string)
            .with_context(|| format!("no token in {stdout:?}"))
    }

    /// Starts the service; its logs go to a file in its directory (a pipe nobody reads could
    /// fill and stall it), shown if the test fails.
    fn start(&self, secrets: &Secrets) -> anyhow::Result<Process> {
        let log = self.dir.join("log");
        let child = self
            .command(secrets, None)?
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(self.dir.join("stderr"))?)
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        Ok(Process {
            name: self.name.clone(),
            dir: self.dir.clone(),
            child,
        })
    }
}

/// A started service; killed on drop, its output printed if the test is failing.
struct Process {
    name: String,
    dir: PathBuf,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || FAILING.load(std::sync::atomic::Ordering::SeqCst) {
            for file in ["log", "stderr"] {
                let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
                let tail: Vec<_> = text.lines().rev().take(30).collect();
                eprintln!("--- {} {file} (last lines) ---", self.name);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Set when the test body returns an error, so the services' logs are shown.
static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Polls `path` until it answers 2xx; fails at once if the service exited (a refused flag).
async fn wait_ready(
    addr: SocketAddr,
    host: &str,
    path: &str,
    mut service: Option<&mut Process>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok((status, _, _)) = client::get(addr, host, path).await
            && status.is_success()
        {
            return Ok(());
        }
        if let Some(service) = service.as_deref_mut()
            && let Some(status) = service.child.try_wait()?
        {
            bail!("{} exited at start ({status})", service.name);
        }
        ensure!(
            Instant::now() < deadline,
            "{addr}{path} not ready within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of `GET path` through `addr`, retried until 200 (routes take a moment to reach
/// the other edges through Redis).
async fn get_within(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match client::get(addr, host, path).await {
            Ok((status, _, body)) if status.is_success() => {
                return Ok(String::from_utf8_lossy(&body).into_owned());
            }
            Ok((status, _, body)) => format!("{status}: {}", String::from_utf8_lossy(&body)),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("GET http://{host}{path} through {addr}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn agent_command(home: &Path, args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(binary("warren")?);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .args(args);
    Ok(command)
}

fn run_agent_command(home: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = warren_deploy::output_within(&mut agent_command(home, args)?, DEADLINE)?;
    ensure!(
        output.status.success(),
        "warren {args:?} failed: {} {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// `warren http ...`, its NDJSON events read on a thread.
struct Agent {
    child: Child,
    events: std::sync::mpsc::Receiver<String>,
}

impl Agent {
    fn spawn(home: &Path, args: &[&str]) -> anyhow::Result<Agent> {
        let mut child = agent_command(home, args)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Agent { child, events })
    }

    /// The first event of `kind`; an `error` event fails at once.
    fn event(&mut self, kind: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .events
                .recv_timeout(left)
                .with_context(|| format!("no {kind} event from the agent within {DEADLINE:?}"))?;
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            match event["event"].as_str() {
                Some(found) if found == kind => return Ok(event),
                Some("error") => bail!("the agent failed: {line}"),
                _ => {}
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database on the test PostgreSQL, dropped afterwards.
async fn create_database() -> anyhow::Result<(String, Database)> {
    let admin_url =
        std::env::var("WARREN_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_PG.to_string());
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::PgConnection::connect(&admin_url),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| {
        format!(
            "PostgreSQL is not reachable at {admin_url}: run ./scripts/test (it starts \
             PostgreSQL), or point WARREN_TEST_POSTGRES at a server where this user may \
             CREATE DATABASE"
        )
    })?;
    let name = format!("warren_deploy_{:016x}", rand_u128() as u64);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let prefix = admin_url
        .split('?')
        .next()
        .and_then(|url| url.rsplit_once('/'))
        .map(|(prefix, _)| prefix.to_string())
        .context("the PostgreSQL URL has no database path")?;
    let url = format!("{prefix}/{name}");
    Ok((url, Database { admin_url, name }))
}

struct Database {
    admin_url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Dropped inside the test's runtime: a thread of its own may block on a new one.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

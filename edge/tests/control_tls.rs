//! The edge's link to control over HTTPS: control serves TLS (`--tls-cert-file`), the edge
//! trusts only `--control-ca-file`, and a TLS-intercepting proxy with another CA between them
//! gets no JWKS through. And the documented deployment (docs/operations.md, "Running three
//! regions"), run as the real binary, keeps every secret out of its command line.
//!
//! The binary test needs `cargo build -p warren-edge` and `redis-server`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use warren_control::{AppState, ControlConfig, RegionConfig};
use warren_edge::EdgeConfig;
use warren_edge::control_http::{ControlHttp, ControlTrust};
use warren_edge::grant::GrantVerifier;
use warren_testkit::pki::{LeafFiles, TestCa};

/// Real control over TLS with a certificate for `localhost` from `ca`.
async fn control_over_tls(dir: &std::path::Path, ca: &TestCa) -> (SocketAddr, CancellationToken) {
    let files = ca
        .write_leaf(dir, "control", &["localhost", "127.0.0.1"])
        .expect("control certificate");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = ControlConfig::new(
        format!("sqlite://{}?mode=rwc", dir.join("control.db").display()),
        format!("https://localhost:{}", addr.port()),
    );
    config.regions = vec![
        RegionConfig::parse("id=local,domain=localhost,tunnel_url=ws://127.0.0.1:1")
            .expect("region"),
    ];
    config.edge_secret = Some("edge-secret-0123456789".into());
    let state = AppState::open(config).await.expect("control state");
    let tls = warren_control::tls::server_config(&files.cert, &files.key).expect("tls config");
    let shutdown = CancellationToken::new();
    tokio::spawn(warren_control::serve_tls(
        listener,
        tls,
        state,
        shutdown.clone(),
    ));
    (addr, shutdown)
}

/// A TLS-intercepting proxy: terminates TLS with a certificate from `its_ca`, then opens its
/// own TLS connection to control (trusting `control_ca`) and copies bytes both ways.
async fn intercepting_proxy(
    its_leaf: &LeafFiles,
    control: SocketAddr,
    control_ca: &LeafFiles,
) -> SocketAddr {
    let server =
        warren_control::tls::server_config(&its_leaf.cert, &its_leaf.key).expect("proxy tls");
    let acceptor = TlsAcceptor::from(server);
    let roots = warren_edge::control_http::roots_from_file(&control_ca.ca).expect("roots");
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let connector = connector.clone();
            tokio::spawn(async move {
                let Ok(mut visitor) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(upstream) = TcpStream::connect(control).await else {
                    return;
                };
                let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
                let Ok(mut upstream) = connector.connect(name, upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut visitor, &mut upstream).await;
            });
        }
    });
    addr
}

fn verifier(url: &str, trust: ControlTrust) -> GrantVerifier {
    let http = ControlHttp::new(url, &trust).expect("client");
    GrantVerifier::new(http, "local", "localhost", Arc::default())
}

#[tokio::test]
async fn the_edge_fetches_keys_only_from_control_it_trusts() {
    warren_edge::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let control_ca = TestCa::new("Warren control CA").expect("ca");
    let (control, shutdown) = control_over_tls(dir.path(), &control_ca).await;
    let control_files = control_ca
        .write_leaf(dir.path(), "unused", &["localhost"])
        .expect("ca file");
    let trust = ControlTrust {
        ca_file: Some(control_files.ca.clone()),
        insecure_http: false,
    };

    // Directly, with the right CA: control's keys arrive.
    let direct = verifier(
        &format!("https://localhost:{}", control.port()),
        trust.clone(),
    );
    let keys = tokio::time::timeout(Duration::from_secs(10), direct.refresh())
        .await
        .expect("in time")
        .expect("JWKS fetched over TLS");
    assert!(keys >= 1, "control publishes its signing key");

    // Through a proxy whose certificate comes from another CA: refused, nothing cached.
    let other_ca = TestCa::new("Someone else's CA").expect("ca");
    let proxy_leaf = other_ca
        .write_leaf(dir.path(), "proxy", &["localhost", "127.0.0.1"])
        .expect("proxy certificate");
    let proxy = intercepting_proxy(&proxy_leaf, control, &control_files).await;
    let intercepted = verifier(
        &format!("https://localhost:{}", proxy.port()),
        trust.clone(),
    );
    let err = intercepted
        .refresh()
        .await
        .expect_err("intercepted link refused");
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert_eq!(intercepted.key_count(), 0);

    // The same proxy, trusted on purpose, does pass the keys: the refusal above is the CA's.
    let proxy_trust = ControlTrust {
        ca_file: Some(proxy_leaf.ca.clone()),
        insecure_http: false,
    };
    let trusting = verifier(&format!("https://localhost:{}", proxy.port()), proxy_trust);
    assert!(trusting.refresh().await.expect("through a trusted proxy") >= 1);

    // Without --control-ca-file the system's roots do not know the test CA either.
    let system = verifier(
        &format!("https://localhost:{}", control.port()),
        ControlTrust::default(),
    );
    assert!(system.refresh().await.is_err());
    shutdown.cancel();
}

#[tokio::test]
async fn the_edge_refuses_plain_http_control_without_the_insecure_flag() {
    let config = EdgeConfig {
        control_url: Some("http://127.0.0.1:8081".into()),
        control_secret: Some("edge-secret-0123456789".into()),
        tokens: vec!["wrn_static_token".into()],
        ..EdgeConfig::default()
    };
    let err = warren_edge::Deps::from_config(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--control-insecure-http"), "{err}");
    let insecure = EdgeConfig {
        control_insecure_http: true,
        ..config
    };
    assert!(warren_edge::Deps::from_config(&insecure).await.is_ok());
}

#[tokio::test]
async fn the_documented_deployment_keeps_secrets_out_of_the_command_line() {
    warren_edge::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let control_ca = TestCa::new("Warren control CA").expect("ca");
    let (control, shutdown) = control_over_tls(dir.path(), &control_ca).await;
    let redis = warren_testkit::redis::RedisServer::start().expect("redis-server");
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).expect("write secret");
        path
    };
    let edge_secret = "edge-secret-0123456789";
    let relay_key = format!("relay-key-{:032x}", rand::random::<u128>());
    let store_key = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let token = format!("wrn_static_{:016x}", rand::random::<u64>());
    let files = [
        ("--control-secret-file", secret("edge-secret", edge_secret)),
        ("--relay-key-file", secret("relay-key", &relay_key)),
        (
            "--cert-store-key-file",
            secret("cert-store.key", &store_key),
        ),
        ("--redis-url-file", secret("redis-url", &redis.url())),
        ("--tokens-file", secret("tokens", &token)),
    ];
    let ca = control_ca
        .write_leaf(dir.path(), "ca-only", &["localhost"])
        .expect("ca file")
        .ca;
    let listen = free_addr();
    let mut command = std::process::Command::new(
        warren_testkit::multi::edge_binary().expect("warren-edge built"),
    );
    command
        .args(["--region", "local", "--domain", "localhost"])
        .args(["--listen", &listen.to_string()])
        .args(["--relay-listen", &free_addr().to_string()])
        .args([
            "--control-url",
            &format!("https://localhost:{}", control.port()),
        ])
        .arg("--control-ca-file")
        .arg(&ca)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        // The edge logs to stdout.
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (flag, path) in &files {
        command.arg(flag).arg(path);
    }
    let mut child = command.spawn().expect("start warren-edge");
    let stdout = child.stdout.take().expect("stdout piped");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text);
        text
    });
    let ready = wait_ready(listen).await;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).expect("cmdline");
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().expect("log reader");
    assert!(ready, "the edge did not become ready:\n{log}");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    for value in [
        edge_secret,
        relay_key.as_str(),
        store_key.as_str(),
        token.as_str(),
        redis.url().as_str(),
    ] {
        assert!(
            !cmdline.contains(value),
            "a secret is in the command line: {cmdline}"
        );
    }
    assert!(cmdline.contains("--control-secret-file"), "{cmdline}");
    // The files were used: control's keys came over TLS checked against the CA file.
    assert!(log.contains("control's signing keys loaded"), "{log}");
    shutdown.cancel();
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

async fn wait_ready(addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if let Ok((status, _, _)) = warren_testkit::client::get(addr, "localhost", "/readyz").await
            && status.is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

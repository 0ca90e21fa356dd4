//! HTTPS with a static certificate and a local CA signing one per tunnel name (what `warren
//! dev --tls` serves), and the agent reaching the edge over `wss://`: verified
//! with `--ca-file`, refused with the system roots, accepted with `--insecure`.

use std::time::Duration;
use tokio::net::TcpListener;
use warren_cli::agent::tls::EdgeTrust;
use warren_cli::agent::{AgentOptions, LocalTarget, TunnelSpec};
use warren_edge::{Deps, EdgeConfig};
use warren_testkit::cluster::{TEST_TOKEN, TestAgent, TestEdge};
use warren_testkit::origin::Origin;
use warren_testkit::tls::{HttpsConnection, roots_from_pem};

fn options(url: &str, port: u16, trust: EdgeTrust) -> AgentOptions {
    let spec = TunnelSpec {
        local: LocalTarget {
            host: "127.0.0.1".into(),
            port,
        },
        subdomain: Some("secure".into()),
        host_header: None,
    };
    let mut options =
        AgentOptions::new(url, TEST_TOKEN.to_string(), vec![spec]).expect("valid options");
    options.tls = trust;
    options.connect_timeout = Duration::from_secs(5);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_connect_over_wss_and_visitors_get_https_with_a_local_ca() -> anyhow::Result<()> {
    warren_edge::tls::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let files = warren_cli::dev_tls::prepare(dir.path())?;
    let mut config = EdgeConfig {
        public_scheme: "https".into(),
        ..TestEdge::config()
    };
    config.tls.tls_cert = Some(files.cert.clone());
    config.tls.tls_key = Some(files.key.clone());
    config.tls.tls_local_ca_cert = Some(files.ca.clone());
    config.tls.tls_local_ca_key = Some(files.ca_key.clone());
    let visitor = TcpListener::bind("127.0.0.1:0").await?;
    let edge = TestEdge::start_tls(config.clone(), Deps::embedded(&config), visitor).await?;
    let tls_port = edge.tls_addr.expect("tls").port();
    let origin = Origin::start().await?;
    let url = format!("wss://localhost:{tls_port}");

    // The system roots do not know the local CA: refused, with advice.
    let refused = TestAgent::start_with(options(&url, origin.port(), EdgeTrust::System)).await;
    let Err(error) = refused else {
        panic!("an unknown CA must be refused");
    };
    let error = error.to_string();
    assert!(error.contains("--ca-file"), "{error}");

    let agent = TestAgent::start_with(options(
        &url,
        origin.port(),
        EdgeTrust::CaFile(files.ca.clone()),
    ))
    .await?;
    assert_eq!(agent.hostname, "secure.localhost");
    assert_eq!(
        agent.public_url,
        format!("https://secure.localhost:{tls_port}")
    );

    let roots = roots_from_pem(&std::fs::read_to_string(&files.ca)?)?;
    let mut conn = HttpsConnection::open(
        edge.tls_addr.expect("tls"),
        "secure.localhost",
        roots.clone(),
    )
    .await?;
    let (status, body) = conn.get("/hello").await?;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello from origin");
    agent.stop().await;
    // The local CA signs only the edge's own names.
    let foreign = HttpsConnection::open(edge.tls_addr.expect("tls"), "example.org", roots).await;
    assert!(foreign.is_err());

    // The control client speaks https with the same trust options (here: the edge's apex,
    // whose probe answers 204).
    let client = warren_cli::control_client::ControlClient::with_trust(
        &format!("https://localhost:{tls_port}"),
        None,
        &EdgeTrust::CaFile(files.ca.clone()),
    )?;
    assert_eq!(client.get("/_warren/probe").await?, serde_json::Value::Null);
    let untrusted = warren_cli::control_client::ControlClient::with_trust(
        &format!("https://localhost:{tls_port}"),
        None,
        &EdgeTrust::System,
    )?;
    assert!(untrusted.get("/_warren/probe").await.is_err());

    // --insecure accepts the certificate without verifying who issued it.
    let insecure = TestAgent::start_with(options(&url, origin.port(), EdgeTrust::Insecure)).await?;
    insecure.stop().await;
    edge.stop().await
}

//! `warren dev`: a complete Warren in one process on embedded defaults (an edge with an
//! in-process route table and a generated token), plus optionally a tunnel to a local port.

use crate::agent::{self, AgentOptions, TunnelSpec};
use crate::args::DevArgs;
use crate::output::Printer;
use crate::signals;
use anyhow::Context;
use serde::Serialize;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warren_edge::{Deps, EdgeConfig, Listeners};

#[derive(Serialize)]
struct DevReady<'a> {
    event: &'static str,
    edge: &'a str,
    token: &'a str,
    tunnel_command: &'a str,
}

pub async fn run(args: DevArgs, printer: Printer) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {}: is another `warren dev` running? Pass --listen 127.0.0.1:PORT",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let token = format!("wrn_dev_{:032x}", rand::random::<u128>());
    let config = EdgeConfig {
        domain: "localhost".into(),
        tokens: vec![token.clone()],
        public_port: Some(addr.port()),
        shutdown_grace: Duration::from_secs(5),
        ..EdgeConfig::default()
    };
    let shutdown = CancellationToken::new();
    signals::on_interrupt(shutdown.clone());
    let deps = Deps::embedded(&config);
    let edge = tokio::spawn(warren_edge::run(
        config,
        deps,
        Listeners {
            visitor: listener,
            tunnel: None,
        },
        shutdown.clone(),
    ));

    let edge_url = format!("http://localhost:{}", addr.port());
    let command = format!("warren http 3000 --edge {edge_url} --token {token}");
    if printer.json {
        printer.json_line(&DevReady {
            event: "dev_ready",
            edge: &edge_url,
            token: &token,
            tunnel_command: &command,
        });
    } else {
        println!(
            "Warren dev edge listening on {addr}; tunnels are served at http://NAME.localhost:{}",
            addr.port()
        );
        println!("Expose a port from another terminal:\n  {command}");
        println!("Press Ctrl-C to stop.");
    }

    let agent_result = match &args.port {
        Some(port) => {
            let local =
                agent::options::parse_local(port, &args.local_host).map_err(anyhow::Error::msg)?;
            let options = AgentOptions::new(
                &format!("http://127.0.0.1:{}", addr.port()),
                token,
                vec![TunnelSpec {
                    local,
                    subdomain: args.subdomain.clone(),
                }],
            )
            .map_err(anyhow::Error::msg)?;
            let result = crate::run_agent(options, printer, shutdown.clone()).await;
            shutdown.cancel();
            result
        }
        None => {
            shutdown.cancelled().await;
            Ok(())
        }
    };
    edge.await.context("the dev edge task failed")??;
    agent_result.map_err(|e| anyhow::anyhow!(e))
}

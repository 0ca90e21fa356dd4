//! Keeps this edge's routes alive: every few seconds each live tunnel's route lease is renewed.
//!
//! A renewal can fail two ways. The route is gone (Redis restarted or was flushed, or the lease
//! ran out while Redis was unreachable): it is claimed again, so routes come back within one
//! interval. Or another session now holds it (the agent reconnected to another edge): this
//! edge's copy is stale, so the tunnel is dropped here and its agent told why.

use crate::routes::{Claimed, Route, RouteError};
use crate::tunnel::Agents;
use crate::tunnel::LiveTunnel;
use std::sync::Arc;
use std::time::Duration;

/// How often routes are renewed (and re-registered after Redis lost them), at most.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Runs until the edge shuts down.
pub async fn keep_routes(agents: Arc<Agents>) {
    let every = RENEW_EVERY.min(agents.routes.lease() / 3);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = agents.life.draining.cancelled() => return,
            _ = ticker.tick() => {}
        }
        for tunnel in agents.registry.tunnels() {
            if let Err(e) = renew(&agents, &tunnel).await {
                // Redis is down: visitors of local sessions are still served from the registry;
                // the next round re-registers the routes once it is back.
                tracing::warn!(host = %tunnel.hostname, error = %e, "route renewal failed");
                break;
            }
        }
    }
}

async fn renew(agents: &Agents, tunnel: &LiveTunnel) -> Result<(), RouteError> {
    if agents
        .routes
        .renew(&tunnel.hostname, &tunnel.session_id)
        .await?
    {
        return Ok(());
    }
    match agents.routes.lookup(&tunnel.hostname).await? {
        Some(holder) if holder.session_id != tunnel.session_id => {
            tracing::info!(host = %tunnel.hostname, holder = %holder.edge_id, "route taken by a newer session; dropping the stale tunnel");
            drop_stale(agents, tunnel);
        }
        _ => {
            let route = Route {
                edge_id: agents.edge_id.clone(),
                session_id: tunnel.session_id.clone(),
                tunnel_id: tunnel.id.0,
                account_id: tunnel.account_id.clone(),
                region: agents.config.region.clone(),
            };
            match agents.routes.claim(&tunnel.hostname, &route).await {
                Ok(Claimed::New) => {
                    let still_served = agents
                        .registry
                        .lookup(&tunnel.hostname)
                        .is_some_and(|t| t.session_id == tunnel.session_id);
                    if still_served {
                        tracing::info!(host = %tunnel.hostname, "route re-registered");
                    } else {
                        // The session ended while we re-claimed: undo it.
                        agents
                            .routes
                            .release(&tunnel.hostname, &tunnel.session_id)
                            .await?;
                    }
                }
                Ok(Claimed::TookOver(holder)) => {
                    // Lost a race with a newer session of the same account: give it back.
                    let _ = agents.routes.claim(&tunnel.hostname, &holder).await;
                    drop_stale(agents, tunnel);
                }
                Err(RouteError::Taken { .. }) => drop_stale(agents, tunnel),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn drop_stale(agents: &Agents, tunnel: &LiveTunnel) {
    if agents
        .registry
        .remove_tunnel(&tunnel.hostname, &tunnel.session_id)
    {
        crate::tunnel::attach::displace(tunnel);
    }
}

//! A visitor request for a tunnel no session on this edge serves: relay it to the edge that
//! serves it, or — while its agent is reconnecting — hold it until the tunnel is back, instead
//! of failing it. Holding is bounded in time (`--hold`, default 10 s) and in count
//! (`--max-held`); a request that outlives either fails with 502.
//!
//! A tunnel counts as reconnecting when its session ended here without being closed on purpose
//! a moment ago, or when the route table still names it but its edge holds no session for it
//! (that edge died, or the agent is moving). A request is sent again after a failed relay only
//! if it had no body, so nothing a visitor sent is ever lost or duplicated.

use crate::body::EdgeBody;
use crate::error::EdgeError;
use crate::relay::client::{self, Owner, RelayFailure};
use crate::visitor::RequestContext;
use crate::visitor::Visitors;
use crate::visitor::{forward, upgrade};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a held request looks for its tunnel on another edge.
const POLL_ROUTES: Duration = Duration::from_millis(100);

pub async fn elsewhere(
    visitors: &Arc<Visitors>,
    hostname: String,
    mut req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<EdgeBody>, EdgeError> {
    let hold = visitors.config.hold_timeout;
    let deadline = Instant::now() + hold;
    let mut permit = None;
    loop {
        let served = visitors.agents.registry.served();
        tokio::pin!(served);
        served.as_mut().enable();
        let local = visitors.agents.registry.lookup(&hostname);
        if let Some(tunnel) = &local
            && !tunnel.session.is_going_away()
        {
            return forward::forward(visitors, tunnel.clone(), req, ctx).await;
        }
        // A dead or draining session still registered here: its agent is reconnecting, maybe
        // already to another edge (in a cluster the route says where).
        let reconnecting = match &visitors.relay {
            None => local.is_some() || visitors.agents.registry.recently_lost(&hostname, hold),
            Some(relay) => match client::resolve(
                relay,
                visitors.agents.routes.as_ref(),
                &visitors.agents.edge_id,
                &hostname,
                permit.is_some(),
            )
            .await?
            {
                None => local.is_some() || visitors.agents.registry.recently_lost(&hostname, hold),
                Some(Owner::Here | Owner::Gone) => true,
                Some(Owner::Remote {
                    edge_id,
                    relay_addr,
                }) => {
                    let owner = (edge_id.as_str(), relay_addr.as_str());
                    let origin = client::Origin {
                        visitor: ctx.peer.ip(),
                        trusted: ctx.trusted,
                        proto: ctx.proto,
                        request_id: &ctx.request_id,
                    };
                    let timeout = visitors.config.upstream_timeout;
                    match client::relay(relay, owner, &hostname, req, &origin, timeout).await {
                        Ok(relayed) => {
                            if let Some((visitor, owner)) = relayed.upgrade {
                                upgrade::splice(
                                    visitor,
                                    owner,
                                    ctx.request_id.clone(),
                                    None,
                                    upgrade::Spliced {
                                        life: visitors.life.clone(),
                                        admission: ctx.admission.clone(),
                                        idle_timeout: visitors.config.websocket_idle_timeout,
                                    },
                                );
                            }
                            return Ok(relayed.response);
                        }
                        Err(RelayFailure::Failed(error)) => return Err(error),
                        Err(RelayFailure::Unreachable(Some(given_back))) => {
                            req = *given_back;
                            true
                        }
                        Err(RelayFailure::Unreachable(None)) => {
                            return Err(EdgeError::AgentUnreachable);
                        }
                    }
                }
            },
        };
        if !reconnecting {
            // Held, and its agent did not come back in time: that is a 502, not a 404.
            return Err(match permit {
                Some(_) => EdgeError::AgentUnreachable,
                None => EdgeError::UnknownTunnel { host: hostname },
            });
        }
        if permit.is_none() {
            let acquired = visitors.held.clone().try_acquire_owned();
            permit = Some(acquired.map_err(|_| EdgeError::AgentUnreachable)?);
            tracing::debug!(host = %hostname, "holding a visitor request while the agent reconnects");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // A draining edge in a cluster keeps holding: the agent is moving to another edge, and
        // the request is relayed there once its new session holds the route.
        if left.is_zero() || (visitors.life.draining.is_cancelled() && visitors.relay.is_none()) {
            return Err(EdgeError::AgentUnreachable);
        }
        // A session on this edge wakes the request at once; other edges are polled.
        let wait = if visitors.relay.is_some() {
            POLL_ROUTES.min(left)
        } else {
            left
        };
        let _ = tokio::time::timeout(wait, served).await;
    }
}

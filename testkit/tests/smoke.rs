//! The shortest path through Warren: a GET through a tunnel.

use warren_testkit::client;
use warren_testkit::cluster::{TestAgent, TestEdge};
use warren_testkit::origin::Origin;

#[tokio::test]
async fn get_through_the_tunnel() -> anyhow::Result<()> {
    warren_testkit::cluster::init_logging();
    let origin = Origin::start().await?;
    let edge = TestEdge::start().await?;
    let agent = TestAgent::start(&edge, origin.port(), Some("smoke")).await?;
    assert_eq!(agent.hostname, "smoke.localhost");
    let (status, _, body) = client::get(edge.addr, &agent.hostname, "/hello").await?;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello from origin");
    agent.stop().await;
    edge.stop().await
}

//! The Warren-only scale scenarios: idle sessions and concurrent visitor streams, measured as
//! the edge's RSS growth per item.

use crate::procstat;
use crate::report::Scale;
use crate::sessions;
use crate::targets::{TOKEN, Target};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const MIB: f64 = (1u64 << 20) as f64;

fn edge_pid(w: &Target) -> u32 {
    w.procs.first().map_or(0, |p| p.pid())
}

/// RSS after letting the edge settle (allocator, heartbeats) for a moment.
async fn settled_rss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    procstat::rss(pid)
}

pub async fn idle_sessions(w: &Target, n: usize) -> Scale {
    let pid = edge_pid(w);
    let before = settled_rss(pid).await;
    let start = Instant::now();
    let opened = sessions::open_idle(w.addr, TOKEN, n).await;
    let open_seconds = start.elapsed().as_secs_f64();
    let (count, errors, note) = match &opened {
        Ok(held) => (held.len(), 0, String::new()),
        Err(e) => (0, 1, format!("{e:#}")),
    };
    let after = settled_rss(pid).await;
    drop(opened);
    let released = settled_rss(pid).await;
    scale(count, before, after, released, open_seconds, errors, note)
}

pub async fn streams(w: &Target, n: usize) -> Scale {
    let pid = edge_pid(w);
    let held = match sessions::connect(
        w.addr,
        TOKEN,
        "hold",
        u32::try_from(n + 1000).unwrap_or(u32::MAX),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => return scale(0, 0, 0, 0, 0.0, 1, format!("hold agent: {e:#}")),
    };
    let (answered, agent) = sessions::hold_agent(held);
    let before = settled_rss(pid).await;
    let start = Instant::now();
    let host = format!(
        "hold.{}",
        w.host.split_once('.').map_or("", |(_, rest)| rest)
    );
    let kept = sessions::hold_streams(w.addr, &host, n).await;
    let open_seconds = start.elapsed().as_secs_f64();
    let after = settled_rss(pid).await;
    let answered = answered.load(Ordering::Relaxed) as usize;
    let (errors, note) = match &kept {
        Ok(_) if answered >= n => (0, format!("in-process agent; {answered} streams answered")),
        Ok(_) => (1, format!("only {answered} of {n} streams answered")),
        Err(e) => (1, format!("{e:#}")),
    };
    drop(kept);
    agent.abort();
    let released = settled_rss(pid).await;
    scale(n, before, after, released, open_seconds, errors, note)
}

fn scale(
    count: usize,
    before: u64,
    after: u64,
    released: u64,
    open_seconds: f64,
    errors: u64,
    note: String,
) -> Scale {
    Scale {
        count,
        edge_rss_before_mib: before as f64 / MIB,
        edge_rss_after_mib: after as f64 / MIB,
        edge_bytes_per_item: if count > 0 {
            after.saturating_sub(before) as f64 / count as f64
        } else {
            0.0
        },
        edge_rss_after_release_mib: released as f64 / MIB,
        open_seconds,
        errors,
        note,
    }
}

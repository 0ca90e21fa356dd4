//! Load generators: closed loop (N connections as fast as they go), open loop (a fixed rate
//! with coordinated-omission correction), one bulk download, one bulk upload.

use crate::client::{Conn, Response, request};
use crate::origin::{checksum, pattern};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What one load run measured. Latencies are in microseconds.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
    /// The first error seen, to tell the user what broke.
    pub first_error: Option<String>,
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits: constant, valid bounds, so this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Outcome {
    fn empty() -> Outcome {
        Outcome {
            requests: 0,
            errors: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            hist: histogram(),
            first_error: None,
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.bytes += other.bytes;
        let _ = self.hist.add(&other.hist);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Adds the outcome of a run that came after this one: counts, latencies and time add up.
    pub fn then(&mut self, next: Outcome) {
        self.elapsed += next.elapsed;
        self.merge(next);
    }

    fn record(&mut self, latency: Duration) {
        let _ = self.hist.record((latency.as_micros() as u64).max(1));
    }
}

/// One HTTP exchange description shared by all connections of a run.
pub struct Exchange {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
    pub expect_body: u64,
    /// Open a new connection for every request (`Connection: close`).
    pub close: bool,
}

impl Exchange {
    pub fn get(addr: SocketAddr, host: &str, size: u64, close: bool) -> Exchange {
        let extra = if close { "Connection: close\r\n" } else { "" };
        Exchange {
            addr,
            request: request("GET", &format!("/bytes/{size}"), host, extra),
            expect_body: size,
            close,
        }
    }

    fn check(&self, r: &Response, out: &mut Outcome) -> bool {
        if r.status != 200 || r.body_bytes != self.expect_body {
            out.error(format!(
                "HTTP {} with {} body bytes (want 200, {})",
                r.status, r.body_bytes, self.expect_body
            ));
            return false;
        }
        true
    }
}

/// Sends one request on `conn` (connecting first if needed) and reads the response.
async fn exchange(ex: &Exchange, conn: &mut Option<Conn>, out: &mut Outcome) -> bool {
    if conn.is_none() {
        match Conn::connect(ex.addr, 64 * 1024).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                out.error(format!("connect: {e}"));
                return false;
            }
        }
    }
    let Some(c) = conn.as_mut() else { return false };
    let result = match c.write_all(&ex.request).await {
        Ok(()) => c.read_response(false).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => {
            if r.close || ex.close {
                *conn = None;
            }
            out.bytes += r.body_bytes;
            ex.check(&r, out)
        }
        Err(e) => {
            *conn = None;
            out.error(format!("request: {e}"));
            false
        }
    }
}

/// `conns` connections, each sending its next request as soon as the last response ended.
pub async fn closed_loop(ex: Arc<Exchange>, conns: usize, duration: Duration) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let ex = ex.clone();
            tokio::spawn(async move {
                let mut out = Outcome::empty();
                let mut conn = None;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if exchange(&ex, &mut conn, &mut out).await {
                        out.requests += 1;
                        out.record(t.elapsed());
                    } else if conn.is_none() {
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                out
            })
        })
        .collect();
    collect(tasks, start).await
}

/// A fixed total `rate` over `conns` keep-alive connections. Connection k sends request j at
/// its intended time `start + (k + j·conns)/rate`. If the previous response came back late,
/// the latency is counted from the intended time (coordinated-omission correction: waiting
/// caused by the system under test counts); if the connection was free, from the actual send,
/// so the generator's 1 ms timer granularity is not charged to the target.
pub async fn open_loop(ex: Arc<Exchange>, conns: usize, rate: f64, duration: Duration) -> Outcome {
    let start = Instant::now() + Duration::from_millis(10);
    let total = (rate * duration.as_secs_f64()) as u64;
    let tasks: Vec<_> = (0..conns as u64)
        .map(|k| {
            let ex = ex.clone();
            tokio::spawn(async move {
                let mut out = Outcome::empty();
                let mut conn = None;
                let mut i = k;
                while i < total {
                    let intended = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    let from = if now > intended + Duration::from_millis(1) {
                        intended
                    } else {
                        tokio::time::sleep_until(intended).await;
                        Instant::now()
                    };
                    if exchange(&ex, &mut conn, &mut out).await {
                        out.requests += 1;
                        out.record(from.elapsed());
                    }
                    i += conns as u64;
                }
                out
            })
        })
        .collect();
    let mut out = collect(tasks, start).await;
    out.elapsed = duration.max(out.elapsed);
    out
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcome>>, start: Instant) -> Outcome {
    let mut total = Outcome::empty();
    for t in tasks {
        match t.await {
            Ok(o) => total.merge(o),
            Err(e) => total.error(format!("load task failed: {e}")),
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// One GET of `size` bytes on a fresh connection.
pub async fn download(addr: SocketAddr, host: &str, size: u64) -> Outcome {
    let ex = Exchange::get(addr, host, size, true);
    let mut out = Outcome::empty();
    let start = Instant::now();
    let mut conn = match Conn::connect(addr, 256 * 1024).await {
        Ok(c) => Some(c),
        Err(e) => {
            out.error(format!("connect: {e}"));
            return out;
        }
    };
    if exchange(&ex, &mut conn, &mut out).await {
        out.requests = 1;
        out.record(start.elapsed());
    }
    out.elapsed = start.elapsed();
    out
}

/// One POST of `size` bytes (1 MiB pattern chunks) to the origin's checksumming sink.
pub async fn upload(addr: SocketAddr, host: &str, size: u64) -> Outcome {
    let mut out = Outcome::empty();
    let start = Instant::now();
    let chunk = pattern(1 << 20);
    let head = request(
        "POST",
        "/upload",
        host,
        &format!("Content-Length: {size}\r\nContent-Type: application/octet-stream\r\n"),
    );
    let result = async {
        let mut c = Conn::connect(addr, 64 * 1024).await?;
        c.write_all(&head).await?;
        let (mut left, mut sum) = (size, 0u64);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            c.write_all(&chunk[..n]).await?;
            sum += checksum(&chunk[..n]);
            left -= n as u64;
        }
        let r = c.read_response(true).await?;
        Ok::<_, std::io::Error>((r, String::from_utf8_lossy(&c.kept).to_string(), sum))
    }
    .await;
    match result {
        Ok((r, body, sum)) if r.status == 200 && body == format!("{size} {sum}") => {
            out.requests = 1;
            out.bytes = size;
            out.record(start.elapsed());
        }
        Ok((r, body, sum)) => out.error(format!(
            "upload answered HTTP {} {body:?}, want \"{size} {sum}\"",
            r.status
        )),
        Err(e) => out.error(format!("upload: {e}")),
    }
    out.elapsed = start.elapsed();
    out
}

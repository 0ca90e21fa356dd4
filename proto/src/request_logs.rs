//! Request logs in a compact binary form, for agents that ask for it in HELLO
//! (`request_log_compact`).
//!
//! A request log is the only per-request control message. As JSON (`{"type":"request_logs",
//! "entries":[{"tunnel":0,"request_id":…}]}`) each entry cost the edge about 2,000
//! instructions to write and the agent about 5,000 to read (field names matched as strings,
//! escapes scanned, an intermediate value per field): a fifth of the agent's work per request
//! (docs/performance.md). This form has no field names and no escaping, and is read with bounds
//! checks only.
//!
//! The body of an EVENT frame in this form starts with [`COMPACT_REQUEST_LOGS`], a byte no
//! JSON text starts with, so a receiver tells the two apart by the first byte:
//!
//! ```text
//! u8  0x01                      format
//! u8  n                         entries, 1..=MAX_REQUEST_LOGS_PER_EVENT
//! n × entry, all integers big-endian:
//!   u32 tunnel   u16 status   u64 duration_us   u64 bytes_in   u64 bytes_out
//!   u8 len, request_id   u8 len, method   u16 len (≤ 1024), path   u8 len, error (0 = none)
//! ```
//!
//! Strings are UTF-8 and cut (on a character boundary) to the field's limit when written.

use crate::control::{Event, MAX_REQUEST_LOGS_PER_EVENT, RequestLog};
use crate::error::FrameError;
use crate::ids::TunnelId;
use bytes::{BufMut, Bytes, BytesMut};

/// First byte of an EVENT body holding compact request logs (JSON starts with `{`).
pub const COMPACT_REQUEST_LOGS: u8 = 0x01;

/// Longest request id, method and error: their length is one byte.
const MAX_SHORT: usize = u8::MAX as usize;
/// Longest path (the edge logs at most 512 bytes of it): with it, a full batch of the
/// longest entries stays under the frame payload limit (tested).
const MAX_PATH: usize = 1024;

/// Encodes up to [`MAX_REQUEST_LOGS_PER_EVENT`] entries (the rest are left to the caller:
/// see the return value) as one EVENT body. Returns the body and how many entries it holds.
pub fn encode(entries: &[RequestLog]) -> (Bytes, usize) {
    let n = entries.len().min(MAX_REQUEST_LOGS_PER_EVENT);
    let mut out = BytesMut::with_capacity(2 + n * 96);
    out.put_u8(COMPACT_REQUEST_LOGS);
    // At most MAX_REQUEST_LOGS_PER_EVENT (128), so it fits.
    out.put_u8(n as u8);
    for log in &entries[..n] {
        out.put_u32(log.tunnel.0);
        out.put_u16(log.status);
        out.put_u64(log.duration_us);
        out.put_u64(log.bytes_in);
        out.put_u64(log.bytes_out);
        let id = cut(&log.request_id, MAX_SHORT);
        out.put_u8(id.len() as u8);
        out.put_slice(id.as_bytes());
        let method = cut(&log.method, MAX_SHORT);
        out.put_u8(method.len() as u8);
        out.put_slice(method.as_bytes());
        let path = cut(&log.path, MAX_PATH);
        out.put_u16(path.len() as u16);
        out.put_slice(path.as_bytes());
        let error = cut(log.error.as_deref().unwrap_or(""), MAX_SHORT);
        out.put_u8(error.len() as u8);
        out.put_slice(error.as_bytes());
    }
    (out.freeze(), n)
}

/// Reads a body written by [`encode`] (first byte included).
pub fn decode(body: &[u8]) -> Result<Event, FrameError> {
    let mut r = Reader { rest: body };
    if r.u8()? != COMPACT_REQUEST_LOGS {
        return Err(bad("not a compact request-log body".into()));
    }
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_REQUEST_LOGS_PER_EVENT {
        return Err(bad(format!(
            "{n} entries (1..={MAX_REQUEST_LOGS_PER_EVENT} allowed)"
        )));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let tunnel = TunnelId(r.u32()?);
        let status = r.u16()?;
        let duration_us = r.u64()?;
        let bytes_in = r.u64()?;
        let bytes_out = r.u64()?;
        let len = usize::from(r.u8()?);
        let request_id = r.string(len, "request_id")?;
        let len = usize::from(r.u8()?);
        let method = r.string(len, "method")?;
        let len = usize::from(r.u16()?);
        if len > MAX_PATH {
            return Err(bad(format!("a path of {len} bytes (at most {MAX_PATH})")));
        }
        let path = r.string(len, "path")?;
        let len = usize::from(r.u8()?);
        let error = r.string(len, "error")?;
        entries.push(RequestLog {
            tunnel,
            request_id,
            method,
            path,
            status,
            duration_us,
            bytes_in,
            bytes_out,
            error: (!error.is_empty()).then_some(error),
        });
    }
    if !r.rest.is_empty() {
        return Err(bad(format!("{} bytes after the last entry", r.rest.len())));
    }
    Ok(Event::RequestLogs { entries })
}

fn bad(reason: String) -> FrameError {
    FrameError::BadPayload {
        kind: "EVENT",
        reason: format!("compact request logs: {reason}"),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < len {
            return Err(bad("truncated".into()));
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, len: usize, field: &str) -> Result<String, FrameError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("{field} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(i: u32) -> RequestLog {
        RequestLog {
            tunnel: TunnelId(i % 3),
            request_id: format!("req-{i}"),
            method: "GET".into(),
            path: format!("/items/{i}?q=ü"),
            status: 200 + (i % 300) as u16,
            duration_us: u64::from(i) * 1_000_003,
            bytes_in: u64::MAX - u64::from(i),
            bytes_out: u64::from(i) << 40,
            error: (i % 2 == 1).then(|| "local-refused".to_string()),
        }
    }

    #[test]
    fn entries_come_back_as_they_went() {
        let logs: Vec<RequestLog> = (0..5).map(log).collect();
        let (body, n) = encode(&logs);
        assert_eq!(n, 5);
        assert_eq!(
            decode(&body).expect("test step"),
            Event::RequestLogs { entries: logs }
        );
    }

    #[test]
    fn a_batch_holds_at_most_the_limit_and_fits_a_frame() {
        let long = RequestLog {
            request_id: "r".repeat(300),
            method: "M".repeat(300),
            path: "é".repeat(40_000),
            error: Some("e".repeat(300)),
            ..log(1)
        };
        let logs = vec![long; MAX_REQUEST_LOGS_PER_EVENT + 7];
        let (body, n) = encode(&logs);
        assert_eq!(n, MAX_REQUEST_LOGS_PER_EVENT);
        let Event::RequestLogs { entries } = decode(&body).expect("test step") else {
            panic!("not request logs");
        };
        assert_eq!(entries.len(), MAX_REQUEST_LOGS_PER_EVENT);
        // Cut on a character boundary to the field limits.
        assert_eq!(entries[0].request_id.len(), 255);
        assert_eq!(entries[0].path.len(), 1024);
        assert!(entries[0].path.chars().all(|c| c == 'é'));
        assert!(
            body.len() <= crate::frame::MAX_PAYLOAD,
            "{} bytes",
            body.len()
        );
    }

    #[test]
    fn damaged_bodies_are_refused_with_a_reason() {
        let (body, _) = encode(&[log(1), log(2)]);
        for len in 0..body.len() {
            let error = decode(&body[..len])
                .expect_err("must be refused")
                .to_string();
            assert!(error.contains("compact request logs"), "{len}: {error}");
        }
        let mut extra = body.to_vec();
        extra.push(0);
        assert!(
            decode(&extra)
                .expect_err("must be refused")
                .to_string()
                .contains("after the last entry")
        );
        let mut zero = body.to_vec();
        zero[1] = 0;
        assert!(
            decode(&zero)
                .expect_err("must be refused")
                .to_string()
                .contains("0 entries")
        );
        let mut bad_utf8 = body.to_vec();
        // The first byte of the first request id.
        bad_utf8[2 + 4 + 2 + 8 * 3 + 1] = 0xff;
        assert!(
            decode(&bad_utf8)
                .expect_err("must be refused")
                .to_string()
                .contains("request_id is not UTF-8")
        );
    }
}

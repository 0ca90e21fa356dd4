//! How the CLI reports: aligned text for people, one JSON object per line with `--json`.
//! Results go to stdout; warnings and progress to stderr (in text mode).

use crate::agent::AgentEvent;
use serde::Serialize;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    pub fn agent_event(&self, event: &AgentEvent) {
        let mut out = Vec::new();
        self.render(event, &mut out);
        write_stdout(&out);
    }

    /// Appends what `event` prints on stdout to `out`; what goes to stderr is printed now.
    fn render(&self, event: &AgentEvent, out: &mut Vec<u8>) {
        if self.json {
            // Request lines are printed under load, one per visitor request: written by hand
            // (serde_json took a quarter of the agent's instructions per small request).
            if let AgentEvent::Request {
                method,
                path,
                status,
                duration_ms,
                bytes_in,
                bytes_out,
                request_id,
                error,
            } = event
            {
                let line = RequestLine {
                    method,
                    path,
                    status: *status,
                    duration_ms: *duration_ms,
                    bytes_in: *bytes_in,
                    bytes_out: *bytes_out,
                    request_id,
                    error: error.as_deref(),
                };
                line.write_json(out);
                return;
            }
            // Everything else straight into the batch, without a string per event.
            let start = out.len();
            match serde_json::to_writer(&mut *out, event) {
                Ok(()) => out.push(b'\n'),
                Err(_) => out.truncate(start),
            }
            return;
        }
        match event {
            AgentEvent::TunnelReady {
                public_url, local, ..
            } => {
                let _ = writeln!(out, "Forwarding  {public_url} → {local}");
            }
            AgentEvent::Request {
                method,
                path,
                status,
                duration_ms,
                bytes_out,
                error,
                ..
            } => {
                // Written in place, without a string per field.
                write_clock(out);
                let _ = write!(out, "  {method:<7} {path:<40} ");
                if *status == 0 {
                    out.extend_from_slice(b"---");
                } else {
                    let _ = write!(out, "{status}");
                }
                out.extend_from_slice(b"  ");
                let mut field = Field::default();
                write_duration(&mut field, *duration_ms);
                field.pad_left(out, 9);
                out.extend_from_slice(b"  ");
                let mut field = Field::default();
                write_bytes(&mut field, *bytes_out);
                field.pad_left(out, 9);
                if let Some(e) = error {
                    let _ = write!(out, "  ({e})");
                }
                out.push(b'\n');
            }
            AgentEvent::Reconnecting {
                attempt,
                delay_ms,
                reason,
            } => {
                eprintln!(
                    "connection lost ({reason}); reconnecting in {:.1}s (attempt {attempt})",
                    *delay_ms as f64 / 1000.0
                );
            }
            AgentEvent::Error {
                message,
                fatal: true,
            } => eprintln!("error: {message}"),
            AgentEvent::Error {
                message,
                fatal: false,
            } => eprintln!("warning: {message}"),
            AgentEvent::Notice { message } => eprintln!("note: {message}"),
            AgentEvent::GrantRenewed { .. } | AgentEvent::LaneReady { .. } => {}
        }
    }

    /// A fatal error, as the last thing the command prints.
    pub fn fatal(&self, message: &str) {
        if self.json {
            self.json_line(&AgentEvent::Error {
                message: message.to_string(),
                fatal: true,
            });
        } else {
            eprintln!("error: {message}");
        }
    }

    /// Any serialisable event, in JSON mode only.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        if let Ok(line) = serde_json::to_string(value) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Writes `bytes` to stdout in one call and flushes.
fn write_stdout(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

/// Most events printed with one write: under load, request lines go out in batches instead of
/// one system call each; when idle, each event is written at once.
const BATCH: usize = 256;

/// Prints agent events from a channel as they come, on a task of its own.
pub struct EventPrinter {
    done: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl EventPrinter {
    pub fn spawn(printer: Printer) -> (UnboundedSender<AgentEvent>, EventPrinter) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let done = tokio_util::sync::CancellationToken::new();
        let stop = done.clone();
        let task = tokio::spawn(async move {
            let mut out = Vec::with_capacity(16 * 1024);
            loop {
                tokio::select! {
                    biased;
                    event = rx.recv() => match event {
                        Some(event) => {
                            printer.render(&event, &mut out);
                            // And whatever else is already queued, in the same write.
                            for _ in 1..BATCH {
                                let Ok(event) = rx.try_recv() else { break };
                                printer.render(&event, &mut out);
                            }
                            write_stdout(&out);
                            out.clear();
                        }
                        None => return,
                    },
                    () = stop.cancelled() => break,
                }
            }
            // Whatever was sent before `finish` is still printed.
            while let Ok(event) = rx.try_recv() {
                printer.render(&event, &mut out);
            }
            write_stdout(&out);
        });
        (tx, EventPrinter { done, task })
    }

    /// Prints what is queued and stops, without waiting for every sender to go away (tasks
    /// still finishing streams may hold one).
    pub async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

/// A request event's fields, for the hand-written JSON line.
struct RequestLine<'a> {
    method: &'a str,
    path: &'a str,
    status: u16,
    duration_ms: f64,
    bytes_in: u64,
    bytes_out: u64,
    request_id: &'a str,
    error: Option<&'a str>,
}

impl RequestLine<'_> {
    /// The same line `serde_json` writes for [`AgentEvent::Request`] (fields in declaration
    /// order, `error` only when set), plus a newline.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"event":"request","method":"#);
        json_str(out, self.method);
        out.extend_from_slice(br#","path":"#);
        json_str(out, self.path);
        out.extend_from_slice(br#","status":"#);
        push_u64(out, u64::from(self.status));
        out.extend_from_slice(br#","duration_ms":"#);
        // serde_json's own float formatting, so the figure reads exactly as before.
        if serde_json::to_writer(&mut *out, &self.duration_ms).is_err() {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(br#","bytes_in":"#);
        push_u64(out, self.bytes_in);
        out.extend_from_slice(br#","bytes_out":"#);
        push_u64(out, self.bytes_out);
        out.extend_from_slice(br#","request_id":"#);
        json_str(out, self.request_id);
        if let Some(error) = self.error {
            out.extend_from_slice(br#","error":"#);
            json_str(out, error);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `n` in decimal (`write!` goes through `fmt` and an `io::Write` adapter: several times the
/// instructions, on every request line).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string: copied as it is when nothing in it needs escaping (the usual case for
/// methods, paths and ids), else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The time of day (UTC), `HH:MM:SS`.
fn write_clock(out: &mut Vec<u8>) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        day / 3600,
        day % 3600 / 60,
        day % 60
    );
}

/// A short field formatted on the stack, to be padded into a line.
#[derive(Default)]
struct Field {
    bytes: [u8; 32],
    len: usize,
}

impl Write for Field {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = &mut self.bytes[self.len..];
        let n = data.len().min(room.len());
        room[..n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Field {
    /// Appends the field right-aligned in `width` columns (the field is ASCII).
    fn pad_left(&self, out: &mut Vec<u8>, width: usize) {
        out.resize(out.len() + width.saturating_sub(self.len), b' ');
        out.extend_from_slice(&self.bytes[..self.len]);
    }
}

fn write_duration(w: &mut impl Write, ms: f64) {
    let _ = if ms < 1000.0 {
        write!(w, "{ms:.1}ms")
    } else {
        write!(w, "{:.2}s", ms / 1000.0)
    };
}

fn write_bytes(w: &mut impl Write, bytes: u64) {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let _ = if unit == 0 {
        write!(w, "{bytes} B")
    } else {
        write!(w, "{value:.1} {}", UNITS[unit])
    };
}

#[cfg(test)]
fn format_duration(ms: f64) -> String {
    let mut out = Vec::new();
    write_duration(&mut out, ms);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn format_bytes(bytes: u64) -> String {
    let mut out = Vec::new();
    write_bytes(&mut out, bytes);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(format_duration(12.34), "12.3ms");
        assert_eq!(format_duration(2500.0), "2.50s");
    }

    fn request(path: &str, status: u16, error: Option<&str>) -> AgentEvent {
        AgentEvent::Request {
            method: "GET".into(),
            path: path.into(),
            status,
            duration_ms: 12.34,
            bytes_in: 0,
            bytes_out: 1536,
            request_id: "r-1".into(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn request_lines_for_people_are_aligned() {
        let mut out = Vec::new();
        let printer = Printer { json: false };
        printer.render(&request("/a", 200, None), &mut out);
        printer.render(&request("/b", 0, Some("local-refused")), &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        // `HH:MM:SS` first, then fixed columns.
        assert_eq!(lines[0].as_bytes()[2], b':');
        assert_eq!(
            &lines[0][8..],
            format!("  GET     {:<40} 200     12.3ms    1.5 KiB", "/a")
        );
        assert_eq!(
            &lines[1][8..],
            format!(
                "  GET     {:<40} ---     12.3ms    1.5 KiB  (local-refused)",
                "/b"
            )
        );
    }

    #[test]
    fn request_lines_in_json_are_one_object_each() {
        let mut out = Vec::new();
        let printer = Printer { json: true };
        printer.render(&request("/a\"q", 200, None), &mut out);
        printer.render(&request("/b", 502, Some("local-refused")), &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "request");
        assert_eq!(lines[0]["path"], "/a\"q");
        assert_eq!(lines[0]["duration_ms"], 12.34);
        assert!(lines[0].get("error").is_none());
        assert_eq!(lines[1]["status"], 502);
        assert_eq!(lines[1]["error"], "local-refused");
    }

    #[test]
    fn hand_written_request_lines_match_serde_json() {
        let printer = Printer { json: true };
        let odd = "/p?q=\"x\"&a=\\b\u{1}\té\u{7f}</script>";
        for (path, error, ms) in [
            ("/", None, 0.0),
            ("/items/1?q=ü", Some("local-refused"), 12.5),
            (odd, Some("bad \"quote\""), 1e-7),
            ("", None, 123456789.123),
        ] {
            let mut event = request(path, 201, error);
            if let AgentEvent::Request {
                duration_ms,
                request_id,
                ..
            } = &mut event
            {
                *duration_ms = ms;
                *request_id = format!("id-{path}");
            }
            let mut out = Vec::new();
            printer.render(&event, &mut out);
            let expected = serde_json::to_string(&event).expect("json") + "\n";
            assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
        }
    }

    #[test]
    fn numbers_in_decimal() {
        for n in [0, 7, 10, 99, 1000, 65535, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn long_fields_are_not_cut() {
        let mut field = Field::default();
        write_bytes(&mut field, u64::MAX);
        let mut out = Vec::new();
        field.pad_left(&mut out, 3);
        assert_eq!(out, b"17179869184.0 GiB");
    }

    #[test]
    fn events_serialise_with_an_event_tag() {
        let event = AgentEvent::TunnelReady {
            public_url: "http://a.localhost:8080".into(),
            hostname: "a.localhost".into(),
            local: "localhost:3000".into(),
            session_id: "s".into(),
        };
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["event"], "tunnel_ready");
        assert_eq!(json["public_url"], "http://a.localhost:8080");
    }
}

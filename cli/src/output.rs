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
            if let Ok(line) = serde_json::to_string(event) {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
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
                let status = if *status == 0 {
                    "---".to_string()
                } else {
                    status.to_string()
                };
                let note = error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}  {method:<7} {path:<40} {status}  {:>9}  {:>9}{note}",
                    clock(),
                    format_duration(*duration_ms),
                    format_bytes(*bytes_out)
                );
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
            AgentEvent::GrantRenewed { .. } => {}
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

fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

fn format_duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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

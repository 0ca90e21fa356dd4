//! The commands that talk to control, one file per command group. Each prints a table (or a
//! sentence) for people and, with `--json`, control's own JSON for scripts.

pub mod account;
pub mod domains;
pub mod history;
pub mod http;
pub mod regions;
pub mod subdomains;
pub mod tokens;
pub mod tunnels;

use crate::config;
use crate::control_client::ControlClient;
use crate::output::Printer;
use serde_json::Value;

/// A client for the logged-in control plane (saved login, or `WARREN_CONTROL`/`WARREN_TOKEN`).
pub fn logged_in() -> anyhow::Result<ControlClient> {
    let login = config::current_login()?;
    Ok(ControlClient::new(&login.control, Some(login.token))?)
}

/// Prints `value` as one line of JSON in `--json` mode, else what `text` makes of it.
pub fn emit(
    printer: Printer,
    value: &Value,
    text: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    if printer.json {
        printer.json_line(value);
    } else {
        print!("{}", text()?);
    }
    Ok(())
}

/// Escapes a path segment taken from the user (token ids, subdomain names, tunnel ids).
pub fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Escapes a query-string value.
pub fn query_value(raw: &str) -> String {
    segment(raw)
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_escaped() {
        assert_eq!(super::segment("abc-1_2"), "abc-1_2");
        assert_eq!(super::segment("a/b c"), "a%2Fb%20c");
        assert_eq!(super::segment(".."), "%2E%2E");
    }
}

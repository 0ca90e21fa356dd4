//! `warren login` and `warren logout`.

use crate::api::{self, Me};
use crate::args::LoginArgs;
use crate::config::{self, Config, ConfigFile};
use crate::control_client::{ControlClient, ControlError};
use crate::output::Printer;
use anyhow::Context as _;
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _};

/// Checks the token with `GET /v1/me`, saves it, says who you are. Nothing is saved unless
/// control accepted the token.
pub async fn login(args: LoginArgs, printer: Printer) -> anyhow::Result<()> {
    let file = ConfigFile::from_env()?;
    let saved = file.load().ok().flatten();
    let control = args
        .control
        .or_else(|| config::env_var("WARREN_CONTROL"))
        .or_else(|| saved.map(|c| c.control))
        .unwrap_or_else(|| config::DEFAULT_CONTROL.to_string());
    // A bad URL is reported before asking for a token.
    ControlClient::new(&control, None)?;
    let token = match (args.token, &args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => config::read_token_file(path)?,
        (None, None) => read_token()?,
    };
    let token = token.trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "no token given: pass --token or paste one when asked"
    );
    let client = ControlClient::new(&control, Some(token.clone()))?;
    let me = match client.get("/v1/me").await {
        Ok(me) => me,
        Err(ControlError::Unauthorized) => anyhow::bail!(
            "control at {} does not accept this token: check it, or create one with `warren tokens create` (`warren dev` prints one)",
            client.url()
        ),
        Err(e) => return Err(e.into()),
    };
    let who: Me = api::decode(me.clone())?;
    file.save(&Config {
        control: client.url().to_string(),
        token,
    })?;
    if printer.json {
        printer.json_line(&json!({
            "control": client.url(),
            "config": file.path,
            "account": me["account"],
            "token": me["token"],
        }));
        return Ok(());
    }
    let scopes = who.token.scopes.join(",");
    println!(
        "Logged in to {} as {}{} (token {}, scopes {}).",
        client.url(),
        who.account.email,
        if who.account.admin { ", admin" } else { "" },
        who.token.id,
        if scopes.is_empty() { "-" } else { &scopes },
    );
    println!("Saved to {}", file.path.display());
    Ok(())
}

/// Deletes the saved login.
pub fn logout(printer: Printer) -> anyhow::Result<()> {
    let file = ConfigFile::from_env()?;
    let removed = file.remove()?;
    if printer.json {
        printer.json_line(&json!({ "logged_out": removed, "config": file.path }));
    } else if removed {
        println!("Logged out: deleted {}", file.path.display());
    } else {
        println!("Not logged in (no {}).", file.path.display());
    }
    if config::env_var("WARREN_TOKEN").is_some() {
        eprintln!(
            "note: WARREN_TOKEN is still set in this shell and is used instead of a saved login"
        );
    }
    Ok(())
}

/// Asks for the token without echo on a terminal; reads one line from a pipe otherwise.
fn read_token() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("API token (input hidden): ")
            .context("cannot read the token from the terminal");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the token from standard input")?;
    Ok(line)
}

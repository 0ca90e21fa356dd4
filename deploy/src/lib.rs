//! Reading what `deploy/terraform` renders, so tests can run it: Terraform itself (offline),
//! the cloud-init user data of a host, and the systemd unit, environment file and secrets map
//! inside it.
//!
//! # Layout
//! - [`terraform`]: find the `terraform` program (or say what to install) and run a root
//!   module to its JSON outputs, offline, in a scratch directory.
//! - [`CloudInit`]: the `#cloud-config` user data of one host (JSON, which is YAML): its files
//!   and commands.
//! - [`Unit`]: a rendered systemd unit: `ExecStart=` split the way systemd splits it,
//!   `EnvironmentFile=`, `LoadCredential=`.
//! - [`env_file`]: `KEY=VALUE` lines of an environment file or of a secrets map.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

/// Largest user data Hetzner (and most clouds) accept; rendered data above it is a bug.
pub const MAX_USER_DATA: usize = 32 * 1024;

/// What to do when Terraform is missing.
pub const INSTALL_TERRAFORM: &str = "terraform is not installed: install Terraform 1.9 or newer \
     (https://developer.hashicorp.com/terraform/install; a single binary, e.g. \
     /usr/local/bin/terraform), or point TERRAFORM at it, then run the tests again";

/// The `terraform` program: `$TERRAFORM`, else the first on `PATH`, else
/// `/usr/local/bin/terraform`; an error naming what to install if there is none.
pub fn terraform() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TERRAFORM") {
        let path = PathBuf::from(path);
        ensure!(path.is_file(), "TERRAFORM={} is not a file", path.display());
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("terraform"))
        .find(|candidate| candidate.is_file())
        .context(INSTALL_TERRAFORM)
}

/// Runs `terraform` in `dir` with no registry, no plugin cache and no state outside `dir`:
/// `TF_CLI_CONFIG_FILE` points at an empty file, `TF_DATA_DIR` into `dir`.
pub fn run_terraform(dir: &Path, args: &[&str], within: Duration) -> anyhow::Result<String> {
    let config = dir.join("empty.tfrc");
    if !config.exists() {
        std::fs::write(&config, "").context("cannot write an empty Terraform CLI config")?;
    }
    let mut command = Command::new(terraform()?);
    command
        .arg(format!("-chdir={}", dir.display()))
        .args(args)
        .env("TF_CLI_CONFIG_FILE", &config)
        .env("TF_DATA_DIR", dir.join(".terraform"))
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR");
    let output = output_within(&mut command, within)
        .with_context(|| format!("terraform {}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "terraform {} failed ({}):\n{}\n{}",
            args.join(" "),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// Applies the root module in `dir` (no providers needed) and returns its outputs, as
/// `terraform output -json` prints them: `{NAME: {"value": ...}}`.
pub fn apply_outputs(dir: &Path) -> anyhow::Result<Value> {
    let minute = Duration::from_secs(60);
    run_terraform(
        dir,
        &["init", "-backend=false", "-input=false", "-no-color"],
        minute,
    )?;
    run_terraform(
        dir,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        minute,
    )?;
    let json = run_terraform(dir, &["output", "-json", "-no-color"], minute)?;
    serde_json::from_str(&json).context("terraform output -json is not JSON")
}

/// Runs `command` to completion, killing it after `within`.
pub fn output_within(
    command: &mut Command,
    within: Duration,
) -> anyhow::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(INSTALL_TERRAFORM),
            _ => anyhow::anyhow!("cannot start {command:?}: {e}"),
        })?;
    // Pipes are drained on threads so a chatty child cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// One host's `#cloud-config` user data.
#[derive(Debug)]
pub struct CloudInit {
    /// `write_files`: path → content.
    pub files: BTreeMap<String, String>,
    /// `runcmd`: each command as its argument vector.
    pub runcmd: Vec<Vec<String>>,
    /// `packages`.
    pub packages: Vec<String>,
}

impl CloudInit {
    /// Parses user data as the topology module renders it: `#cloud-config`, then JSON.
    pub fn parse(user_data: &str) -> anyhow::Result<CloudInit> {
        ensure!(
            user_data.len() <= MAX_USER_DATA,
            "user data is {} bytes, over the {MAX_USER_DATA} clouds accept",
            user_data.len()
        );
        let body = user_data
            .strip_prefix("#cloud-config\n")
            .context("user data does not start with #cloud-config")?;
        let config: Value = serde_json::from_str(body).context("cloud-config is not JSON")?;
        let mut files = BTreeMap::new();
        for file in config["write_files"].as_array().into_iter().flatten() {
            let path = file["path"]
                .as_str()
                .context("a write_files entry has no path")?;
            let content = file["content"]
                .as_str()
                .with_context(|| format!("{path} has no content"))?;
            files.insert(path.to_string(), content.to_string());
        }
        let strings = |value: &Value| -> anyhow::Result<Vec<String>> {
            value
                .as_array()
                .context("expected a list")?
                .iter()
                .map(|v| v.as_str().map(str::to_string).context("expected a string"))
                .collect()
        };
        let runcmd = config["runcmd"]
            .as_array()
            .into_iter()
            .flatten()
            .map(strings)
            .collect::<anyhow::Result<_>>()?;
        let packages = strings(&config["packages"]).unwrap_or_default();
        Ok(CloudInit {
            files,
            runcmd,
            packages,
        })
    }

    /// The content of the file written at `path`.
    pub fn file(&self, path: &str) -> anyhow::Result<&str> {
        self.files
            .get(path)
            .map(String::as_str)
            .with_context(|| format!("cloud-init writes no {path}"))
    }
}

/// A rendered systemd unit, reduced to what starts the process.
#[derive(Debug)]
pub struct Unit {
    /// `ExecStart=`, split into arguments the way systemd does.
    pub exec_start: Vec<String>,
    /// `EnvironmentFile=` paths.
    pub environment_files: Vec<String>,
    /// `LoadCredential=NAME:PATH`, as (NAME, PATH).
    pub credentials: Vec<(String, String)>,
}

impl Unit {
    pub fn parse(unit: &str) -> anyhow::Result<Unit> {
        let mut exec_start = None;
        let mut environment_files = Vec::new();
        let mut credentials = Vec::new();
        for line in unit.lines() {
            if let Some(command) = line.strip_prefix("ExecStart=") {
                ensure!(exec_start.is_none(), "two ExecStart= lines");
                exec_start = Some(split_exec(command)?);
            } else if let Some(path) = line.strip_prefix("EnvironmentFile=") {
                environment_files.push(path.to_string());
            } else if let Some(spec) = line.strip_prefix("LoadCredential=") {
                let (name, path) = spec
                    .split_once(':')
                    .with_context(|| format!("LoadCredential={spec} has no NAME:PATH"))?;
                credentials.push((name.to_string(), path.to_string()));
            }
        }
        Ok(Unit {
            exec_start: exec_start.context("the unit has no ExecStart=")?,
            environment_files,
            credentials,
        })
    }
}

/// Splits an `ExecStart=` command line like systemd: words separated by spaces, double-quoted
/// words with `\\` and `\"` escapes, `%%` → `%` and `$$` → `$`. Any other specifier or
/// variable is refused: the topology never renders one, and this reader does not expand them.
pub fn split_exec(command: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let quoted = first == '"';
        if quoted {
            chars.next();
        }
        let mut word = String::new();
        loop {
            match chars.next() {
                None if quoted => bail!("unterminated quote in ExecStart={command}"),
                None => break,
                Some('"') if quoted => break,
                Some(' ') if !quoted => break,
                Some('\\') => match chars.next() {
                    Some(c @ ('\\' | '"')) => word.push(c),
                    other => bail!("unexpected escape \\{other:?} in ExecStart="),
                },
                Some(c @ ('%' | '$')) => {
                    ensure!(
                        chars.next() == Some(c),
                        "ExecStart= has an unexpanded {c} (write {c}{c} for a literal one)"
                    );
                    word.push(c);
                }
                Some(c) => word.push(c),
            }
        }
        if quoted {
            ensure!(
                matches!(chars.peek(), None | Some(' ')),
                "text right after a closing quote in ExecStart={command}"
            );
        }
        words.push(word);
    }
}

/// `KEY=VALUE` lines; blank lines and `#` comments skipped. Values are taken literally (the
/// topology renders no quotes).
pub fn env_file(content: &str) -> anyhow::Result<Vec<(String, String)>> {
    content
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("{line:?} is not KEY=VALUE"))?;
            ensure!(
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{key:?} is not an environment variable name"
            );
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// The environment variable names a clap program reads, from its `--help` (`[env: NAME=...]`).
pub fn help_env_names(help: &str) -> Vec<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find(['=', ']'])?;
            Some(rest[..end].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_is_split_like_systemd() {
        let words = split_exec(r#""/bin/a" "--name=US East" "x\"y\\z" "100%%" "$$HOME" bare"#)
            .expect("valid");
        assert_eq!(
            words,
            [
                "/bin/a",
                "--name=US East",
                r#"x"y\z"#,
                "100%",
                "$HOME",
                "bare"
            ]
        );
        assert!(split_exec(r#""open"#).is_err());
        assert!(split_exec(r#""%n""#).is_err(), "a specifier is refused");
        assert!(split_exec("$HOME").is_err(), "a variable is refused");
    }

    #[test]
    fn env_files_refuse_what_is_not_a_variable() {
        assert_eq!(
            env_file("# c\n\nA_1=x=y\n").expect("valid"),
            [("A_1".to_string(), "x=y".to_string())]
        );
        assert!(env_file("lower=1").is_err());
        assert!(env_file("NOEQUALS").is_err());
    }

    #[test]
    fn env_names_come_from_help() {
        let help = "  --listen <L>  [env: WARREN_EDGE_LISTEN=] [default: x]\n  \
                    --key <K> [env: WARREN_EDGE_RELAY_KEY]\n";
        assert_eq!(
            help_env_names(help),
            ["WARREN_EDGE_LISTEN", "WARREN_EDGE_RELAY_KEY"]
        );
    }
}

//! Login state: which control plane to talk to and with which API token.
//!
//! Stored in `$XDG_CONFIG_HOME/warren/config.toml` (else `~/.config/warren/config.toml`) as
//!
//! ```toml
//! control = "http://127.0.0.1:8081"
//! token = "wrn_..."
//! ```
//!
//! The file holds a secret, so it is created with mode 0600 (never chmod-ed afterwards: there
//! is no moment at which it is readable by others) and replaced atomically (write a temporary
//! file next to it, then rename). `WARREN_CONTROL` and `WARREN_TOKEN` override what it says.

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The control plane `warren login` uses when none is given or saved.
pub const DEFAULT_CONTROL: &str = "http://127.0.0.1:8081";

/// What `config.toml` holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub control: String,
    pub token: String,
}

impl fmt::Debug for Config {
    // The token is a secret: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("control", &self.control)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Where the login state lives.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    /// The file named by the environment (`XDG_CONFIG_HOME`, else `HOME`).
    pub fn from_env() -> anyhow::Result<ConfigFile> {
        ConfigFile::locate(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
    }

    /// The file for these values of `XDG_CONFIG_HOME` and `HOME`. Relative or empty values of
    /// `XDG_CONFIG_HOME` are ignored, as the XDG spec says.
    pub fn locate(xdg: Option<OsString>, home: Option<OsString>) -> anyhow::Result<ConfigFile> {
        let base = match xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
            Some(xdg) => xdg,
            None => match home.filter(|h| !h.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config"),
                None => anyhow::bail!(
                    "cannot tell where to keep the login: set HOME or XDG_CONFIG_HOME, or use WARREN_CONTROL and WARREN_TOKEN"
                ),
            },
        };
        Ok(ConfigFile {
            path: base.join("warren").join("config.toml"),
        })
    }

    /// The saved login, or `None` if there is no file.
    pub fn load(&self) -> anyhow::Result<Option<Config>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("cannot read {}: {e}", self.path.display()),
        };
        parse(&text).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid warren config ({e}); fix it or delete it and run `warren login` again",
                self.path.display()
            )
        })
    }

    /// Saves `config` atomically, readable only by its owner.
    pub fn save(&self, config: &Config) -> anyhow::Result<()> {
        let text = toml::to_string(config)?;
        let dir = self
            .path
            .parent()
            .ok_or_else(|| anyhow::anyhow!("{} has no directory", self.path.display()))?;
        create_private_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        write_atomically(&self.path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    /// Deletes the saved login; `false` if there was none.
    pub fn remove(&self) -> anyhow::Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => anyhow::bail!("cannot delete {}: {e}", self.path.display()),
        }
    }
}

/// Parses the file's text; unknown keys are errors (a typo should not be silently ignored).
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str::<Config>(text).map_err(|e| e.message().to_string())
}

/// Where the CLI's login comes from after applying the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub control: String,
    pub token: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("control", &self.control)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The login to use: `WARREN_CONTROL` / `WARREN_TOKEN` win over the saved file. `None` when
/// there is no token anywhere.
pub fn resolve(
    saved: Option<Config>,
    env_control: Option<String>,
    env_token: Option<String>,
) -> Option<Login> {
    let env_control = env_control.filter(|s| !s.trim().is_empty());
    let env_token = env_token.filter(|s| !s.trim().is_empty());
    let (saved_control, saved_token) = match saved {
        Some(c) => (Some(c.control), Some(c.token)),
        None => (None, None),
    };
    let token = env_token.or(saved_token)?;
    let control = env_control
        .or(saved_control)
        .unwrap_or_else(|| DEFAULT_CONTROL.to_string());
    Some(Login { control, token })
}

/// The login from the environment and the config file, or a sentence saying how to log in.
pub fn current_login() -> anyhow::Result<Login> {
    let file = ConfigFile::from_env();
    let saved = match &file {
        Ok(file) => file.load()?,
        Err(_) => None,
    };
    resolve(saved, env_var("WARREN_CONTROL"), env_var("WARREN_TOKEN")).ok_or_else(|| {
        anyhow::anyhow!(
            "not logged in: run `warren login --control URL` (or set WARREN_CONTROL and WARREN_TOKEN)"
        )
    })
}

/// [`current_login`], with `token` (from `--token`) winning over everything else.
pub fn current_login_with(token: Option<String>) -> anyhow::Result<Login> {
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        return current_login();
    };
    let saved = ConfigFile::from_env()
        .ok()
        .and_then(|file| file.load().ok().flatten());
    resolve(saved, env_var("WARREN_CONTROL"), Some(token))
        .ok_or_else(|| anyhow::anyhow!("no token given"))
}

/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// The token in `path` (`--token-file`): its first non-empty line, trimmed. A token in a file
/// (or `WARREN_TOKEN`) stays out of `ps`, where `--token` is visible to every user.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_TOKEN_FILE,
        "--token-file {} is larger than {MAX_TOKEN_FILE} bytes",
        path.display()
    );
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("--token-file {}: the file is empty", path.display()))
}

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes to a fresh temporary file (mode 0600 from its creation) in the same directory, syncs
/// it, and renames it over `path`: readers see the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_gives_its_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "\n wrn_from_file \n").expect("write");
        assert_eq!(read_token_file(&path).expect("read"), "wrn_from_file");
        std::fs::write(&path, "\n").expect("write");
        assert!(read_token_file(&path).is_err());
        assert!(read_token_file(&dir.path().join("missing")).is_err());
    }

    fn config(control: &str, token: &str) -> Config {
        Config {
            control: control.into(),
            token: token.into(),
        }
    }

    #[test]
    fn valid_and_invalid_files() {
        let ok = parse("control = \"http://c:1\"\ntoken = \"wrn_a\"\n");
        assert_eq!(ok, Ok(config("http://c:1", "wrn_a")));
        let unknown = parse("control = \"http://c:1\"\ntoken = \"t\"\ncolour = \"red\"\n");
        assert!(unknown.is_err_and(|e| e.contains("colour")));
        assert!(parse("control = \"http://c:1\"\n").is_err_and(|e| e.contains("token")));
        assert!(parse("this is not toml").is_err());
        assert!(parse("control = 1\ntoken = \"t\"").is_err());
    }

    #[test]
    fn location_follows_xdg_then_home() -> anyhow::Result<()> {
        let f = ConfigFile::locate(Some("/x".into()), Some("/h".into()))?;
        assert_eq!(f.path, PathBuf::from("/x/warren/config.toml"));
        let f = ConfigFile::locate(Some("relative".into()), Some("/h".into()))?;
        assert_eq!(f.path, PathBuf::from("/h/.config/warren/config.toml"));
        let f = ConfigFile::locate(None, Some("/h".into()))?;
        assert_eq!(f.path, PathBuf::from("/h/.config/warren/config.toml"));
        assert!(ConfigFile::locate(None, None).is_err());
        Ok(())
    }

    #[test]
    fn environment_overrides_the_file() {
        let saved = Some(config("http://saved", "wrn_saved"));
        let login = resolve(saved.clone(), None, None);
        assert_eq!(login.map(|l| l.token), Some("wrn_saved".into()));
        let login = resolve(saved.clone(), Some("http://env".into()), None);
        assert_eq!(
            login.map(|l| (l.control, l.token)),
            Some(("http://env".into(), "wrn_saved".into()))
        );
        let login = resolve(saved, None, Some("wrn_env".into()));
        assert_eq!(login.map(|l| l.token), Some("wrn_env".into()));
        let login = resolve(None, None, Some("wrn_env".into()));
        assert_eq!(login.map(|l| l.control), Some(DEFAULT_CONTROL.into()));
        assert_eq!(resolve(None, Some("http://env".into()), None), None);
    }

    #[test]
    fn saved_files_are_private_and_round_trip() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("warren-config-{:x}", rand::random::<u64>()));
        let file = ConfigFile {
            path: dir.join("warren").join("config.toml"),
        };
        assert_eq!(file.load()?, None);
        file.save(&config("http://c", "wrn_1"))?;
        file.save(&config("http://c", "wrn_2"))?;
        assert_eq!(file.load()?, Some(config("http://c", "wrn_2")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file.path)?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.join("warren"))?.count();
        assert_eq!(leftovers, 1, "no temporary files are left behind");
        std::fs::write(&file.path, "token = 3")?;
        let error = file
            .load()
            .map(|_| ())
            .expect_err("a corrupt file is an error")
            .to_string();
        assert!(
            error.contains("config.toml") && error.contains("warren login"),
            "{error}"
        );
        assert!(file.remove()?);
        assert!(!file.remove()?);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

//! Secrets from files, so they never appear in `ps` or `/proc/PID/cmdline`.
//!
//! Every secret flag of the edge (`--token`, `--control-secret`, `--redis-url`, `--relay-key`,
//! `--cert-store-key`) has a `*-file` variant, and each reads an environment variable too.
//! A file holds the secret on its first non-empty line, trailing whitespace trimmed (a token
//! file holds one token per line, `#` starts a comment). Files are read once at start.

use std::path::Path;

use crate::control_http::ReadFileError;

/// Largest secret file read.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret that cannot be taken from its file, or is given twice. Each message names the
/// flag, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum BadSecretFile {
    /// Missing, unreadable or too large; shown as `--x-file /path`.
    #[error(transparent)]
    Read(#[from] ReadFileError),
    #[error("{flag} {}: the file is not UTF-8 text", .path.display())]
    NotUtf8 {
        flag: String,
        path: std::path::PathBuf,
    },
    #[error("{flag} {}: the file is empty", .path.display())]
    Empty {
        flag: String,
        path: std::path::PathBuf,
    },
    #[error("pass {flag} or {flag}-file, not both")]
    Both { flag: String },
}

/// The secret in `path` (for `flag`, named in errors): its first non-empty line, trimmed.
pub fn read_secret(path: &Path, flag: &str) -> Result<String, BadSecretFile> {
    let lines = read_lines(path, flag)?;
    lines
        .into_iter()
        .next()
        .ok_or_else(|| BadSecretFile::Empty {
            flag: flag.to_string(),
            path: path.to_path_buf(),
        })
}

/// Every non-empty line of `path` that is not a `#` comment, trimmed.
pub fn read_lines(path: &Path, flag: &str) -> Result<Vec<String>, BadSecretFile> {
    let bytes =
        crate::control_http::read_capped(path, MAX_SECRET_FILE).map_err(|e| e.for_flag(flag))?;
    let text = String::from_utf8(bytes).map_err(|_| BadSecretFile::NotUtf8 {
        flag: flag.to_string(),
        path: path.to_path_buf(),
    })?;
    warn_if_world_readable(path, flag);
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Sets `value` from `file` when given; both at once is a mistake worth refusing.
pub fn merge(
    value: &mut Option<String>,
    file: Option<&Path>,
    flag: &str,
) -> Result<(), BadSecretFile> {
    let Some(path) = file else {
        return Ok(());
    };
    if value.is_some() {
        return Err(BadSecretFile::Both {
            flag: flag.to_string(),
        });
    }
    *value = Some(read_secret(path, &format!("{flag}-file"))?);
    Ok(())
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path, flag: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(file = %path.display(), flag, "secret file is readable by every user: chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_path: &Path, _flag: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_the_first_line_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "\n  s3cret-value-0123 \r\nignored\n").expect("write");
        assert_eq!(
            read_secret(&path, "--x-file").expect("read"),
            "s3cret-value-0123"
        );
    }

    #[test]
    fn empty_missing_and_huge_files_are_refused_naming_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n# only a comment\n").expect("write");
        let err = read_secret(&empty, "--relay-key-file")
            .expect_err("empty")
            .to_string();
        assert!(
            err.contains("--relay-key-file") && err.contains("empty"),
            "{err}"
        );
        let err = read_secret(&dir.path().join("missing"), "--x-file")
            .expect_err("missing")
            .to_string();
        assert!(err.contains("--x-file"), "{err}");
        let huge = dir.path().join("huge");
        std::fs::write(&huge, vec![b'a'; MAX_SECRET_FILE as usize + 1]).expect("write");
        assert!(read_secret(&huge, "--x-file").is_err());
    }

    #[test]
    fn a_value_and_a_file_together_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file").expect("write");
        let mut value = None;
        merge(&mut value, Some(&path), "--control-secret").expect("merged");
        assert_eq!(value.as_deref(), Some("from-file"));
        let err = merge(&mut value, Some(&path), "--control-secret")
            .expect_err("both")
            .to_string();
        assert!(err.contains("not both"), "{err}");
    }
}

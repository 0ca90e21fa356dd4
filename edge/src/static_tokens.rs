//! Static tokens: API tokens the edge itself accepts (a stand-alone edge, `warren dev`), each
//! giving its own **account**, so that one token's holder can never take over another's name.
//!
//! A token is given as `NAME:SECRET` (`--token`, repeatable; `WARREN_EDGE_TOKENS`, comma-separated;
//! or one a line in `--tokens-file`): the agent presents `SECRET`, and acts as account
//! `static:NAME`. Several secrets under one NAME are one account (a rotation). A bare `SECRET`
//! (no `:`) is an account of its own, named after its digest. Secrets are kept only as SHA-256
//! digests and compared in constant time; errors name the flag or the file's line, never a
//! secret.

use std::collections::HashSet;
use std::path::Path;

use async_trait::async_trait;
use warren_proto::control::{Credential, Reject, RejectCode};

use crate::auth::{Authenticator, Identity, constant_time_eq, digest};

/// Largest `--tokens-file` read.
pub const MAX_TOKENS_FILE_BYTES: u64 = 1024 * 1024;
/// Most static tokens an edge holds.
pub const MAX_STATIC_TOKENS: usize = 10_000;
/// Longest secret accepted.
pub const MAX_SECRET_LEN: usize = 512;
/// Longest account name.
pub const MAX_NAME_LEN: usize = 32;
/// The prefix of every static account's id (control's ids never contain `:`).
pub const ACCOUNT_PREFIX: &str = "static:";

/// A static token spec, or the tokens file, that is refused. `origin` says where the spec came
/// from ("--token #2", "tokens.txt line 7"); no message shows a secret.
#[derive(Debug, thiserror::Error)]
pub enum BadStaticTokens {
    #[error(
        "{origin}: the account name before `:` must be 1 to {MAX_NAME_LEN} lowercase letters, \
         digits or hyphens (NAME:SECRET)"
    )]
    Name { origin: String },
    #[error("{origin}: a token's secret must be 1 to {MAX_SECRET_LEN} characters")]
    SecretLength { origin: String },
    #[error("{origin}: a token's secret must not contain spaces or control characters")]
    SecretCharacters { origin: String },
    #[error("{origin}: this secret is given twice; each secret belongs to one account")]
    Duplicate { origin: String },
    #[error("at most {MAX_STATIC_TOKENS} static tokens")]
    TooMany,
    /// `--tokens-file` cannot be opened or read; the reason is the source.
    #[error("--tokens-file {}", .path.display())]
    Unreadable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tokens-file {} is over {MAX_TOKENS_FILE_BYTES} bytes", .path.display())]
    FileTooLarge { path: std::path::PathBuf },
}

/// The accepted tokens and the account each gives.
#[derive(Default)]
pub struct StaticTokens {
    entries: Vec<Entry>,
}

struct Entry {
    account_id: String,
    token_id: String,
    digest: [u8; 32],
}

impl StaticTokens {
    /// Parses `NAME:SECRET` (or bare `SECRET`) specs; `origin(i)` says where spec `i` came from
    /// in an error ("--token #2", "tokens.txt line 7").
    pub fn parse<'a>(
        specs: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<StaticTokens, BadStaticTokens> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen = HashSet::new();
        for (origin, spec) in specs {
            let (name, secret) = match spec.split_once(':') {
                Some((name, secret)) => (Some(parse_name(name, &origin)?), secret),
                None => (None, spec),
            };
            if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
                return Err(BadStaticTokens::SecretLength { origin });
            }
            if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(BadStaticTokens::SecretCharacters { origin });
            }
            let digest = digest(secret);
            if !seen.insert(digest) {
                return Err(BadStaticTokens::Duplicate { origin });
            }
            let name = name.unwrap_or_else(|| {
                let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
                format!("token-{hex}")
            });
            let index = entries.len();
            entries.push(Entry {
                account_id: format!("{ACCOUNT_PREFIX}{name}"),
                token_id: format!("static-{name}-{index}"),
                digest,
            });
            if entries.len() > MAX_STATIC_TOKENS {
                return Err(BadStaticTokens::TooMany);
            }
        }
        Ok(StaticTokens { entries })
    }

    /// The tokens of `--token` and, if given, `--tokens-file`.
    pub fn from_sources(
        flags: &[String],
        file: Option<&Path>,
    ) -> Result<StaticTokens, BadStaticTokens> {
        let text = match file {
            Some(path) => read_bounded(path)?,
            None => String::new(),
        };
        let from_flags = flags
            .iter()
            .enumerate()
            .map(|(i, spec)| (format!("--token #{}", i + 1), spec.as_str()));
        let shown = file.map(|p| p.display().to_string()).unwrap_or_default();
        let from_file = text.lines().enumerate().filter_map(|(i, line)| {
            let line = line.trim();
            (!line.is_empty() && !line.starts_with('#'))
                .then(|| (format!("{shown} line {}", i + 1), line))
        });
        StaticTokens::parse(from_flags.chain(from_file))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_name(name: &str, origin: &str) -> Result<String, BadStaticTokens> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(BadStaticTokens::Name {
            origin: origin.to_string(),
        })
    }
}

fn read_bounded(path: &Path) -> Result<String, BadStaticTokens> {
    use std::io::Read;
    let unreadable = |source| BadStaticTokens::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    file.take(MAX_TOKENS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_TOKENS_FILE_BYTES {
        return Err(BadStaticTokens::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

#[async_trait]
impl Authenticator for StaticTokens {
    async fn authenticate(&self, credential: &Credential) -> Result<Identity, Reject> {
        let Credential::Token(token) = credential else {
            return Err(Reject::new(
                RejectCode::Unauthorized,
                "this edge accepts API tokens, not grants: pass --token",
            ));
        };
        let presented = digest(token);
        // Check every digest, so timing says nothing about which one (or whether any) matched.
        let found = self.entries.iter().fold(None, |found, entry| {
            if constant_time_eq(&entry.digest, &presented) {
                Some(entry)
            } else {
                found
            }
        });
        match found {
            Some(entry) => Ok(Identity {
                account_id: entry.account_id.clone(),
                token_id: entry.token_id.clone(),
                grant: None,
            }),
            None => Err(Reject::new(
                RejectCode::Unauthorized,
                "the edge does not accept this token: check --token (or WARREN_TOKEN)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[&'static str]) -> Result<StaticTokens, String> {
        StaticTokens::parse(list.iter().map(|s| ("--token".to_string(), *s)))
            .map_err(|e| e.to_string())
    }

    async fn account(tokens: &StaticTokens, secret: &str) -> Option<String> {
        tokens
            .authenticate(&Credential::Token(secret.into()))
            .await
            .ok()
            .map(|i| i.account_id)
    }

    #[tokio::test]
    async fn each_name_is_an_account() {
        let tokens =
            specs(&["alice:sa1", "bob:sb1", "alice:sa2", "bare-secret"]).unwrap_or_default();
        assert_eq!(
            account(&tokens, "sa1").await.as_deref(),
            Some("static:alice")
        );
        assert_eq!(
            account(&tokens, "sa2").await.as_deref(),
            Some("static:alice")
        );
        assert_eq!(account(&tokens, "sb1").await.as_deref(), Some("static:bob"));
        let bare = account(&tokens, "bare-secret").await.unwrap_or_default();
        assert!(bare.starts_with("static:token-"), "{bare}");
        assert_eq!(
            account(&tokens, "alice:sa1").await,
            None,
            "the agent presents the secret"
        );
        let refused = tokens.authenticate(&Credential::Token("nope".into())).await;
        assert_eq!(refused.map_err(|r| r.code), Err(RejectCode::Unauthorized));
    }

    #[test]
    fn bad_specs_are_refused_without_showing_secrets() {
        for (bad, why) in [
            (vec!["Alice:s"], "lowercase"),
            (vec![":s"], "lowercase"),
            (vec!["a:"], "1 to"),
            (vec!["a:s", "b:s"], "given twice"),
            (vec!["a:with space"], "spaces"),
        ] {
            let error = specs(&bad).err().unwrap_or_default();
            assert!(error.contains(why), "{bad:?}: {error}");
            assert!(!error.contains("with space"), "{error}");
        }
    }

    #[test]
    fn a_tokens_file_is_read_with_comments_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# team\nalice:one\n\nbob:two\nBAD:x\n").unwrap_or_default();
        let error = StaticTokens::from_sources(&[], Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("line 5"), "{error}");
        std::fs::write(&path, "# team\nalice:one\n\nbob:two\n").unwrap_or_default();
        let tokens = StaticTokens::from_sources(&["carol:three".into()], Some(&path));
        assert_eq!(tokens.map(|t| t.entries.len()).ok(), Some(3));
        let big = "a:".to_string() + &"x".repeat(MAX_TOKENS_FILE_BYTES as usize + 1);
        std::fs::write(&path, big).unwrap_or_default();
        let error = StaticTokens::from_sources(&[], Some(&path))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("over"), "{error}");
    }
}

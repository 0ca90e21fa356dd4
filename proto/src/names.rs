//! Subdomain names: validation of requested names and the stable default name.

use sha2::{Digest, Sha256};

/// Names nobody may claim: they belong to the service itself or invite phishing.
pub const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "connect",
    "dashboard",
    "status",
    "mail",
    "smtp",
    "imap",
    "ftp",
    "ns1",
    "ns2",
    "root",
    "warren",
    "edge",
    "control",
    "login",
    "auth",
    "support",
    "help",
    "docs",
    "static",
    "assets",
    "cdn",
    "relay",
    "tunnel",
    "localhost",
];

/// A valid, lowercase DNS label that may name a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subdomain(String);

impl Subdomain {
    /// Parses a requested name. The error is a sentence for the user.
    pub fn parse(raw: &str) -> Result<Subdomain, String> {
        let name = raw.to_ascii_lowercase();
        if !(3..=63).contains(&name.len()) {
            return Err(format!("subdomain {raw:?} must be 3 to 63 characters long"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "subdomain {raw:?} may contain only letters, digits and hyphens"
            ));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(format!(
                "subdomain {raw:?} must not start or end with a hyphen"
            ));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "subdomain {raw:?} is reserved; choose another name"
            ));
        }
        Ok(Subdomain(name))
    }

    /// The name an account gets when it asks for none: derived from the account and the local
    /// address, so the same command gets the same URL back after a restart.
    pub fn stable(account: &str, seed: &str) -> Subdomain {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let digest = Sha256::new()
            .chain_update(account.as_bytes())
            .chain_update([0])
            .chain_update(seed.as_bytes())
            .finalize();
        let mut name = String::with_capacity(10);
        // First character a letter, so the label never looks like a number.
        name.push(char::from(b'a' + digest[0] % 26));
        for byte in &digest[1..10] {
            name.push(char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]));
        }
        Subdomain(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Subdomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_and_lowercases() {
        assert_eq!(
            Subdomain::parse("My-App1").map(|s| s.0),
            Ok("my-app1".to_string())
        );
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "a_b_c",
            "a.b.c",
            "www",
            &"x".repeat(64),
        ] {
            let err = Subdomain::parse(bad).expect_err(bad);
            assert!(err.contains("subdomain"), "{err}");
        }
    }

    #[test]
    fn stable_names_are_stable_and_distinct() {
        let a = Subdomain::stable("acct", "localhost:3000");
        assert_eq!(a, Subdomain::stable("acct", "localhost:3000"));
        assert_ne!(a, Subdomain::stable("acct", "localhost:3001"));
        assert_ne!(a, Subdomain::stable("other", "localhost:3000"));
        assert!(Subdomain::parse(a.as_str()).is_ok());
    }
}

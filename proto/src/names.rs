//! Names: subdomains (validation of requested names and the stable default name) and custom
//! domains (a whole hostname an account proves it owns).

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

/// A requested subdomain that may not name a tunnel; the message is a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSubdomain {
    #[error("subdomain {raw:?} must be 3 to 63 characters long")]
    Length { raw: String },
    #[error("subdomain {raw:?} may contain only letters, digits and hyphens")]
    Characters { raw: String },
    #[error("subdomain {raw:?} must not start or end with a hyphen")]
    Hyphen { raw: String },
    #[error("subdomain {raw:?} is reserved; choose another name")]
    Reserved { raw: String },
}

impl Subdomain {
    /// Parses a requested name. The error's message is a sentence for the user.
    pub fn parse(raw: &str) -> Result<Subdomain, BadSubdomain> {
        let name = raw.to_ascii_lowercase();
        let raw = raw.to_string();
        if !(3..=63).contains(&name.len()) {
            return Err(BadSubdomain::Length { raw });
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(BadSubdomain::Characters { raw });
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(BadSubdomain::Hyphen { raw });
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(BadSubdomain::Reserved { raw });
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

/// The longest hostname DNS can carry (RFC 1035: 255 octets on the wire, 253 as text).
pub const MAX_HOSTNAME_LEN: usize = 253;

/// A custom domain: a lowercase fully qualified hostname of at least two labels, e.g.
/// `app.example.com`. Not an IP address, no wildcard, no trailing dot, ASCII only
/// (internationalised names in their `xn--` form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomDomain(String);

/// A hostname that may not be a custom domain; the message is a sentence for the user.
/// `shown` is the name as given, cut to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDomain {
    #[error("the domain is empty; give a hostname such as app.example.com")]
    Empty,
    #[error("domain {shown:?}... is longer than {MAX_HOSTNAME_LEN} characters")]
    TooLong { shown: String },
    #[error("domain {shown:?} has non-ASCII characters; give its punycode (xn--) form")]
    NonAscii { shown: String },
    #[error("{shown:?} is an IP address; give a hostname such as app.example.com")]
    IpAddress { shown: String },
    #[error("domain {shown:?} is not fully qualified; give a hostname such as app.example.com")]
    NotQualified { shown: String },
    #[error("domain {shown:?} has an empty label (two dots in a row?)")]
    EmptyLabel { shown: String },
    #[error("domain {shown:?} has a label longer than 63 characters")]
    LabelTooLong { shown: String },
    #[error("domain {shown:?} may contain only letters, digits, hyphens and dots (no wildcard)")]
    Characters { shown: String },
    #[error("domain {shown:?} has a label that starts or ends with a hyphen")]
    HyphenLabel { shown: String },
    #[error("domain {shown:?} ends in a number, which no top-level domain is; give a hostname")]
    NumericTld { shown: String },
    #[error("domain {shown:?} is under localhost, which never resolves to an edge")]
    Localhost { shown: String },
}

impl CustomDomain {
    /// Parses a hostname (case-insensitive; one trailing dot is dropped). The error's message
    /// is a sentence for the user.
    pub fn parse(raw: &str) -> Result<CustomDomain, BadDomain> {
        let shown: String = raw.chars().take(80).collect();
        let name = raw.trim().strip_suffix('.').unwrap_or(raw.trim());
        let name = name.to_ascii_lowercase();
        if name.is_empty() {
            return Err(BadDomain::Empty);
        }
        if name.len() > MAX_HOSTNAME_LEN {
            return Err(BadDomain::TooLong { shown });
        }
        if !name.is_ascii() {
            return Err(BadDomain::NonAscii { shown });
        }
        let unbracketed = name.trim_start_matches('[').trim_end_matches(']');
        if unbracketed.parse::<std::net::IpAddr>().is_ok() {
            return Err(BadDomain::IpAddress { shown });
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(BadDomain::NotQualified { shown });
        }
        for label in &labels {
            check_label(label, &shown)?;
        }
        let tld = labels[labels.len() - 1];
        if tld.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadDomain::NumericTld { shown });
        }
        if tld == "localhost" {
            return Err(BadDomain::Localhost { shown });
        }
        Ok(CustomDomain(name))
    }

    /// True when this name is `domain` or under it (`a.b.domain`).
    pub fn is_within(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.0 == domain
            || self
                .0
                .strip_suffix(&domain)
                .is_some_and(|rest| rest.ends_with('.'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CustomDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_label(label: &str, shown: &str) -> Result<(), BadDomain> {
    let shown = || shown.to_string();
    if label.is_empty() {
        return Err(BadDomain::EmptyLabel { shown: shown() });
    }
    if label.len() > 63 {
        return Err(BadDomain::LabelTooLong { shown: shown() });
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(BadDomain::Characters { shown: shown() });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(BadDomain::HyphenLabel { shown: shown() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_domains_are_lowercased_fqdns() {
        for (raw, want) in [
            ("App.Example.COM", "app.example.com"),
            ("app.example.com.", "app.example.com"),
            ("example.com", "example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a-1.b2.example.co.uk", "a-1.b2.example.co.uk"),
        ] {
            assert_eq!(
                CustomDomain::parse(raw).map(|d| d.0),
                Ok(want.to_string()),
                "{raw}"
            );
        }
    }

    #[test]
    fn bad_custom_domains_are_refused_with_a_reason() {
        let long_label = format!("{}.example.com", "x".repeat(64));
        let long_name = format!("{}example.com", "abcdefghi.".repeat(25));
        for (raw, why) in [
            ("", "empty"),
            ("localhost", "fully qualified"),
            ("app", "fully qualified"),
            ("10.0.0.1", "IP address"),
            ("::1", "IP address"),
            ("[::1]", "IP address"),
            ("1.2.3.4.5", "number"),
            ("a..example.com", "empty label"),
            ("*.example.com", "no wildcard"),
            ("a_b.example.com", "only letters"),
            ("-a.example.com", "hyphen"),
            ("bücher.example", "punycode"),
            ("app.localhost", "localhost"),
            (long_label.as_str(), "63"),
            (long_name.as_str(), "253"),
        ] {
            let err = CustomDomain::parse(raw).expect_err(raw).to_string();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }

    #[test]
    fn within_is_by_whole_labels() {
        let d = CustomDomain::parse("a.eu.example.net").expect("valid");
        assert!(d.is_within("eu.example.net"));
        assert!(d.is_within("EU.example.net."));
        assert!(d.is_within("a.eu.example.net"));
        assert!(!d.is_within("u.example.net"));
        assert!(!d.is_within("b.a.eu.example.net"));
    }

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
            let err = Subdomain::parse(bad).expect_err(bad).to_string();
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

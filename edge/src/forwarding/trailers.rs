//! Trailer sections (RFC 9112 §7.1.2), parsed strictly and written again — never passed on as
//! received. A trailer line that a lenient server would split differently (a bare LF, a bare
//! CR, an obs-fold continuation, a NUL) is how a request gets smuggled past a proxy that
//! forwards trailers as bytes, so each of those is refused (the visitor gets 400; a response
//! that carries one is cut).
//!
//! Only fields the message declared in its `Trailer` header and that may travel in trailers
//! at all (`fields::allowed_in_trailers`) are passed on; the rest are dropped. hyper, which
//! writes the trailers on the general path, applies the same two rules.

use super::fields::{allowed_in_trailers, is_field_value, is_token};
use bytes::{BufMut, Bytes, BytesMut};

/// Most fields in one trailer section.
pub const MAX_TRAILER_FIELDS: usize = 64;

/// Why a trailer section is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrailerError {
    #[error("a bare LF in the trailer section")]
    BareLf,
    #[error("a bare CR in the trailer section")]
    BareCr,
    #[error("a folded (obs-fold) line in the trailer section")]
    ObsFold,
    #[error("a NUL byte in the trailer section")]
    Nul,
    #[error("a trailer line that is not a field")]
    NotAField,
    #[error("a trailer field value with characters a field may not hold")]
    BadValue,
    #[error("more than {MAX_TRAILER_FIELDS} trailer fields")]
    TooMany,
}

/// The field names a message declared in its `Trailer` header (lowercase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared(Vec<String>);

impl Declared {
    /// Adds the names listed in one `Trailer` field value.
    pub fn add(&mut self, value: &[u8]) {
        for name in value.split(|&b| b == b',') {
            let name = trim(name);
            if is_token(name) && self.0.len() < MAX_TRAILER_FIELDS {
                self.0
                    .push(String::from_utf8_lossy(name).to_ascii_lowercase());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.0
            .iter()
            .any(|d| d.as_bytes().eq_ignore_ascii_case(name))
    }
}

/// A trailer field: its name and its value.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// Parses `section` (field lines, each ending in CRLF, without the empty line that closes the
/// section) strictly into `(name, value)` pairs, values without surrounding whitespace.
pub fn parse(section: &[u8]) -> Result<Vec<Field<'_>>, TrailerError> {
    if section.contains(&0) {
        return Err(TrailerError::Nul);
    }
    let mut fields = Vec::new();
    let mut rest = section;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') else {
            // Every line ends in CRLF; the decoder only hands over whole sections.
            return Err(TrailerError::NotAField);
        };
        if rest[end] == b'\n' {
            return Err(TrailerError::BareLf);
        }
        if rest.get(end + 1) != Some(&b'\n') {
            return Err(TrailerError::BareCr);
        }
        let line = &rest[..end];
        rest = &rest[end + 2..];
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(TrailerError::ObsFold);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(TrailerError::NotAField)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if !is_token(name) {
            return Err(TrailerError::NotAField);
        }
        if !is_field_value(value) {
            return Err(TrailerError::BadValue);
        }
        if fields.len() == MAX_TRAILER_FIELDS {
            return Err(TrailerError::TooMany);
        }
        fields.push((name, value));
    }
    Ok(fields)
}

/// The trailer section to pass on for `section`: the fields `declared` lists that may travel
/// in trailers, each written again as `name: value CRLF`.
pub fn rewrite(section: &[u8], declared: &Declared) -> Result<Bytes, TrailerError> {
    let fields = parse(section)?;
    if declared.is_empty() {
        return Ok(Bytes::new());
    }
    let mut out = BytesMut::new();
    for (name, value) in fields {
        // Names are tokens (ASCII), checked above.
        let allowed = std::str::from_utf8(name).is_ok_and(allowed_in_trailers);
        if allowed && declared.contains(name) {
            // Lowercase, as hyper writes trailers on the general path.
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
    }
    Ok(out.freeze())
}

/// Removes from `trailers` every field that may not travel in trailers (the general path:
/// hyper drops undeclared ones itself when it writes them).
pub fn filter_map(trailers: &mut http::HeaderMap) {
    let denied: Vec<http::HeaderName> = trailers
        .keys()
        .filter(|name| !allowed_in_trailers(name.as_str()))
        .cloned()
        .collect();
    for name in denied {
        trailers.remove(name);
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(list: &str) -> Declared {
        let mut d = Declared::default();
        d.add(list.as_bytes());
        d
    }

    #[test]
    fn parses_well_formed_sections() {
        let fields = parse(b"X-Checksum:  abc \r\nServer-Timing: db;dur=53\r\n").expect("valid");
        assert_eq!(
            fields,
            vec![
                (&b"X-Checksum"[..], &b"abc"[..]),
                (&b"Server-Timing"[..], &b"db;dur=53"[..])
            ]
        );
        assert_eq!(parse(b""), Ok(vec![]));
    }

    #[test]
    fn refuses_every_smuggling_shape() {
        for (section, error) in [
            (
                &b"X: a\nGET /smuggled HTTP/1.1\r\n"[..],
                TrailerError::BareLf,
            ),
            (b"X: a\rGET / HTTP/1.1\r\n", TrailerError::BareCr),
            (b"X: a\r\n continued\r\n", TrailerError::ObsFold),
            (b"X: a\r\n\tcontinued\r\n", TrailerError::ObsFold),
            (b"X: a\0b\r\n", TrailerError::Nul),
            (b"GET / HTTP/1.1\r\n", TrailerError::NotAField),
            (b"X : a\r\n", TrailerError::NotAField),
            (b": a\r\n", TrailerError::NotAField),
            (b"X: a\x7f\r\n", TrailerError::BadValue),
        ] {
            assert_eq!(
                parse(section),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(section)
            );
        }
        let many: Vec<u8> = (0..=MAX_TRAILER_FIELDS)
            .flat_map(|i| format!("x-{i}: v\r\n").into_bytes())
            .collect();
        assert_eq!(parse(&many), Err(TrailerError::TooMany));
    }

    #[test]
    fn passes_on_declared_allowed_fields_only() {
        let section =
            b"X-Checksum: abc\r\nContent-Length: 5\r\nwarren-relay-moved: 1\r\nX-Other: 1\r\n";
        let out = rewrite(
            section,
            &declared("x-checksum, Content-Length, warren-relay-moved"),
        )
        .expect("valid");
        assert_eq!(&out[..], b"x-checksum: abc\r\n");
        assert!(
            rewrite(section, &Declared::default())
                .expect("valid")
                .is_empty()
        );
        assert!(
            rewrite(b"X: a\nY: b\r\n", &declared("x")).is_err(),
            "strict even when nothing is kept"
        );
    }
}

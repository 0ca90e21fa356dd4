//! HTTP/1.1 message bodies on the wire (RFC 9112 §6-7): how long a body is, and the chunked
//! coding, decoded strictly (a malformed chunk is an error, never a guess: a guess is how
//! requests get smuggled) and encoded again for the next hop. No I/O here.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt::Write as _;

/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// How the end of a body is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (a GET, a HEAD response, a 204 or 304).
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses without a length, as HTTP/1.0
    /// servers send them).
    UntilClose,
}

/// What the decoder found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Body bytes (split off the buffer, not copied).
    Data(Bytes),
    /// The last chunk was read; the trailer section (field lines, each ending in CRLF,
    /// without the empty line that closes it) follows.
    End(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(pub &'static str);

/// Decodes the chunked coding from a buffer that fills as bytes arrive.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    visitors: State,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder {
            visitors: State::Size,
        }
    }
}

impl ChunkDecoder {
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.visitors == State::Done
    }

    /// The next piece decodable from `buf` (consuming what it used), or `Ok(None)` when more
    /// bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, ChunkError> {
        loop {
            match self.visitors {
                State::Size => {
                    let Some(line_end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&buf[..line_end])?;
                    buf.advance(line_end + 2);
                    self.visitors = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = remaining - take as u64;
                    self.visitors = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Piece::Data(data)));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("chunk data is not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.visitors = State::Size;
                }
                State::Trailers => {
                    // Field lines up to an empty line; the section ends at the first CRLF CRLF
                    // (or at once, when the empty line comes first).
                    if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                        buf.advance(2);
                        self.visitors = State::Done;
                        return Ok(Some(Piece::End(Bytes::new())));
                    }
                    let Some(end) = find(buf, b"\r\n\r\n", MAX_TRAILERS)? else {
                        return Ok(None);
                    };
                    let trailers = buf.split_to(end + 2).freeze();
                    buf.advance(2);
                    if trailers.contains(&0) {
                        return Err(ChunkError("NUL in the trailer section"));
                    }
                    self.visitors = State::Done;
                    return Ok(Some(Piece::End(trailers)));
                }
                State::Done => return Ok(None),
            }
        }
    }
}

/// The chunk size of a chunk line, extensions ignored (RFC 9112 §7.1.1).
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError("chunk size is not hexadecimal"));
    }
    if digits > 15 {
        return Err(ChunkError("chunk size is too large"));
    }
    let rest = &line[digits..];
    let rest_trimmed = trim_ows(rest);
    if !rest_trimmed.is_empty() && rest_trimmed[0] != b';' {
        return Err(ChunkError("unexpected bytes after the chunk size"));
    }
    if rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ChunkError("control character in a chunk extension"));
    }
    let mut size = 0u64;
    for &d in &line[..digits] {
        // Cannot fail: `digits` counted only hex digits, and 15 of them fit in a u64.
        let value = char::from(d).to_digit(16).unwrap_or(0);
        size = size * 16 + u64::from(value);
    }
    Ok(size)
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Where the first CRLF is, within `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, ChunkError> {
    find(buf, b"\r\n", limit)
}

fn find(buf: &[u8], needle: &[u8], limit: usize) -> Result<Option<usize>, ChunkError> {
    let window = &buf[..buf.len().min(limit + needle.len())];
    match window.windows(needle.len()).position(|w| w == needle) {
        Some(at) => Ok(Some(at)),
        None if buf.len() > limit => Err(ChunkError("line too long")),
        None => {
            // A bare LF where a CRLF belongs is refused rather than guessed at.
            if needle == b"\r\n" && window.contains(&b'\n') {
                return Err(ChunkError("bare LF in chunk framing"));
            }
            Ok(None)
        }
    }
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_header(len: usize) -> Bytes {
    let mut line = String::with_capacity(18);
    // Writing into a String cannot fail.
    let _ = write!(line, "{len:x}\r\n");
    Bytes::from(line)
}

/// What ends a chunked body: the last chunk, `trailers` (each line with its CRLF), and the
/// empty line.
pub fn last_chunk(trailers: &[u8]) -> Bytes {
    let mut end = BytesMut::with_capacity(5 + trailers.len());
    end.extend_from_slice(b"0\r\n");
    end.extend_from_slice(trailers);
    end.extend_from_slice(b"\r\n");
    end.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut decoder = ChunkDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(piece) = decoder.decode(&mut buf)? {
                match piece {
                    Piece::Data(data) => body.extend_from_slice(&data),
                    Piece::End(t) => trailers = Some(t.to_vec()),
                }
            }
        }
        assert!(decoder.is_done(), "not done: {decoder:?}");
        Ok((body, trailers.expect("end")))
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers_at_any_split() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\nA ; a=\"b\"\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n";
        for step in 1..input.len() {
            let (body, trailers) = decode_all(input, step).expect("valid");
            assert_eq!(body, b"hello, world0123456789");
            assert_eq!(trailers, b"X-T: 1\r\nY: 2\r\n");
        }
        let (body, trailers) = decode_all(b"0\r\n\r\n", 1).expect("empty");
        assert!(body.is_empty() && trailers.is_empty());
    }

    #[test]
    fn leaves_what_follows_the_body_in_the_buffer() {
        let mut decoder = ChunkDecoder::default();
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Piece::Data(Bytes::from_static(b"a"))))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Piece::End(Bytes::new()))));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn refuses_malformed_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"-1\r\n",
            b"ffffffffffffffff\r\n",
            b"5 x\r\n",
            b"5;\x01\r\n",
            b"0\r\nbad\0trailer\r\n\r\n",
        ] {
            let mut decoder = ChunkDecoder::default();
            let mut buf = BytesMut::from(bad);
            let mut result = Ok(None);
            for _ in 0..4 {
                result = decoder.decode(&mut buf);
                if !matches!(result, Ok(Some(_))) {
                    break;
                }
            }
            assert!(
                result.is_err(),
                "{:?} gave {result:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut decoder = ChunkDecoder::default();
        let mut long = BytesMut::from(&b"1;"[..]);
        long.extend_from_slice(&vec![b'x'; MAX_CHUNK_LINE + 10]);
        assert!(decoder.decode(&mut long).is_err());
    }

    #[test]
    fn encodes_what_it_decodes() {
        let mut wire = BytesMut::new();
        for part in [&b"abc"[..], &[7u8; 300][..]] {
            wire.extend_from_slice(&chunk_header(part.len()));
            wire.extend_from_slice(part);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(&last_chunk(b"T: v\r\n"));
        let (body, trailers) = decode_all(&wire, 7).expect("valid");
        assert_eq!(body.len(), 303);
        assert_eq!(trailers, b"T: v\r\n");
        assert_eq!(&chunk_header(300)[..], b"12c\r\n");
    }
}

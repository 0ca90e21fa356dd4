//! A deterministic byte pattern for large transfers.
//!
//! Byte `i` of every pattern stream is [`pattern_byte`]`(i)`, so a receiver can check a transfer
//! of any length by hashing it and comparing with [`pattern_sha256`], without either side holding
//! the whole payload. The sequence comes from a 64-bit mix of the word index (`offset / 8`), so it
//! does not repeat with any short period: a chunk delivered twice, dropped or out of order changes
//! the digest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

/// Size of the frames pattern bodies produce.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// The pattern byte at `offset`.
pub fn pattern_byte(offset: u64) -> u8 {
    let word = mix(offset / 8).to_le_bytes();
    word[(offset % 8) as usize]
}

/// Fills `buf` with the pattern bytes starting at `offset`.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    // Unaligned head byte by byte, then whole words: one mix per 8 bytes keeps multi-GiB
    // transfers cheap.
    let head = (((8 - offset % 8) % 8) as usize).min(buf.len());
    let (head_buf, rest) = buf.split_at_mut(head);
    for (i, byte) in head_buf.iter_mut().enumerate() {
        *byte = pattern_byte(offset + i as u64);
    }
    let mut word_index = (offset + head as u64) / 8;
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&mix(word_index).to_le_bytes());
        word_index += 1;
    }
    let tail = words.into_remainder();
    let tail_len = tail.len();
    tail.copy_from_slice(&mix(word_index).to_le_bytes()[..tail_len]);
}

/// Hex SHA-256 of the first `len` pattern bytes, computed in 64 KiB steps.
pub fn pattern_sha256(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut offset = 0;
    while offset < len {
        let n = chunk_len(offset, len);
        fill_pattern(offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex(&hasher.finalize())
}

/// A body of the first `len` pattern bytes in 64 KiB frames, with an exact size hint (so hyper
/// sends `Content-Length`). Usable as a request or response body of any size.
pub fn pattern_body(len: u64) -> impl Body<Data = Bytes, Error = io::Error> + Send + 'static {
    PatternBody::new(len)
}

/// Like [`pattern_body`] but without a size hint, so HTTP/1.1 sends it chunked.
pub fn pattern_body_chunked(
    len: u64,
) -> impl Body<Data = Bytes, Error = io::Error> + Send + 'static {
    let mut body = PatternBody::new(len);
    body.exact_size = false;
    body
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Streams pattern bytes `[next, end)`; generated one frame at a time.
#[derive(Debug)]
struct PatternBody {
    next: u64,
    end: u64,
    exact_size: bool,
}

impl PatternBody {
    fn new(len: u64) -> Self {
        PatternBody {
            next: 0,
            end: len,
            exact_size: true,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.next >= this.end {
            return Poll::Ready(None);
        }
        let n = chunk_len(this.next, this.end);
        let mut buf = BytesMut::zeroed(n);
        fill_pattern(this.next, &mut buf);
        this.next += n as u64;
        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact_size {
            SizeHint::with_exact(self.end - self.next)
        } else {
            SizeHint::default()
        }
    }
}

/// Length of the frame starting at `offset` in a stream ending at `end`.
fn chunk_len(offset: u64, end: u64) -> usize {
    // The min bounds the value by CHUNK_SIZE, so it fits in usize.
    usize::try_from((end - offset).min(CHUNK_SIZE as u64)).expect("chunk fits in usize")
}

/// splitmix64's finaliser: cheap, and consecutive inputs give unrelated outputs.
fn mix(word_index: u64) -> u64 {
    let mut z = word_index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_every_alignment() {
        for start in 0..17u64 {
            for len in 0..40usize {
                let mut buf = vec![0u8; len];
                fill_pattern(start, &mut buf);
                let expected: Vec<u8> = (start..start + len as u64).map(pattern_byte).collect();
                assert_eq!(buf, expected, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn swapped_chunks_change_the_bytes() {
        let mut a = vec![0u8; 2 * CHUNK_SIZE];
        fill_pattern(0, &mut a);
        let (first, second) = a.split_at(CHUNK_SIZE);
        assert_ne!(first, second);
    }

    #[test]
    fn sha256_of_empty_pattern_is_the_empty_digest() {
        assert_eq!(
            pattern_sha256(0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_matches_a_one_shot_hash() {
        let len = 3 * CHUNK_SIZE + 5;
        let mut buf = vec![0u8; len];
        fill_pattern(0, &mut buf);
        assert_eq!(pattern_sha256(len as u64), hex(&Sha256::digest(&buf)));
    }
}

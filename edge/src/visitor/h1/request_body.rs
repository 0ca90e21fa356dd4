//! A visitor's request body on its way to the local service: read at the visitor's pace,
//! its framing checked (a length counted down, or the chunked coding decoded strictly, its
//! trailers rewritten by the forwarding policy) and encoded again onto the tunnel stream.

use crate::forwarding::trailers::{self, Declared};
use crate::visitor::h1::framing::{self, BodyKind, ChunkDecoder, Piece};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncRead;
use tokio_util::io::poll_read_buf;
use warren_session::Stream;

/// Visitor read size for request bodies.
const BODY_READ: usize = 64 * 1024;

/// The request body on its way to the local service.
pub(super) struct Upload {
    kind: BodyKind,
    /// Bytes of a length-delimited body still to come.
    remaining: u64,
    decoder: ChunkDecoder,
    /// The trailer fields the request declared: the only ones passed on.
    trailers: Declared,
    /// Encoded bytes accepted from the visitor, not yet taken by the stream.
    pending: VecDeque<Bytes>,
    /// The whole body was read from the visitor (some of it may still be in `pending`).
    pub(super) read_all: bool,
    /// The whole body was read from the visitor and taken by the stream.
    pub(super) done: bool,
    /// The stream stopped taking the body (the local service closed or answered early).
    pub(super) failed: bool,
    pub(super) sent: u64,
}

pub(super) enum UploadError {
    /// The visitor's body is malformed (`Some`) or the visitor went away (`None`).
    Visitor(Option<String>),
    Upstream(io::Error),
}

impl Upload {
    pub(super) fn new(kind: BodyKind, trailers: Declared) -> Upload {
        Upload {
            kind,
            trailers,
            remaining: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
            decoder: ChunkDecoder::default(),
            pending: VecDeque::new(),
            read_all: false,
            done: false,
            failed: false,
            sent: 0,
        }
    }

    /// Drives the upload until the body is all queued to the stream.
    pub(super) async fn drive<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut BytesMut,
        stream: &Stream,
    ) -> Result<(), UploadError> {
        poll_fn(|cx| self.poll(cx, io, buf, stream)).await
    }

    /// Whether no body byte was taken from the visitor yet (the request can be sent again).
    pub(super) fn untouched(&self) -> bool {
        self.sent == 0 && matches!(self.kind, BodyKind::None)
    }

    /// Queues the head for a (new) stream.
    pub(super) fn restart(&mut self, head: Bytes) {
        self.pending.clear();
        self.pending.push_back(head);
        self.read_all = false;
        self.done = false;
    }

    pub(super) fn poll<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
        buf: &mut BytesMut,
        stream: &Stream,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            while let Some(front) = self.pending.front_mut() {
                match stream.poll_write_data(cx, front) {
                    Poll::Ready(Ok(n)) => {
                        front.advance(n);
                        if front.is_empty() {
                            self.pending.pop_front();
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Upstream(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.read_all {
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            match self.kind {
                BodyKind::None | BodyKind::UntilClose => {
                    self.read_all = true;
                    continue;
                }
                BodyKind::Length(_) => {
                    if !buf.is_empty() {
                        let take = usize::try_from(self.remaining)
                            .unwrap_or(usize::MAX)
                            .min(buf.len());
                        self.pending.push_back(buf.split_to(take).freeze());
                        self.remaining -= take as u64;
                        self.sent += take as u64;
                        self.read_all = self.remaining == 0;
                        continue;
                    }
                }
                BodyKind::Chunked => match self.decoder.decode(buf) {
                    Ok(Some(Piece::Data(data))) => {
                        self.sent += data.len() as u64;
                        self.pending.push_back(framing::chunk_header(data.len()));
                        self.pending.push_back(data);
                        self.pending.push_back(Bytes::from_static(b"\r\n"));
                        continue;
                    }
                    Ok(Some(Piece::End(trailers))) => {
                        let trailers =
                            trailers::rewrite(&trailers, &self.trailers).map_err(|e| {
                                UploadError::Visitor(Some(format!("malformed chunked body: {e}")))
                            })?;
                        self.pending.push_back(framing::last_chunk(&trailers));
                        self.read_all = true;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(UploadError::Visitor(Some(e.to_string())))),
                },
            }
            buf.reserve(BODY_READ);
            match ready!(poll_read_buf(Pin::new(&mut *io), cx, buf)) {
                Ok(0) | Err(_) => return Poll::Ready(Err(UploadError::Visitor(None))),
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visitor::h1::testing::{SessionPair, visitor_pipe};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Runs an upload of `kind` whose visitor sends `sent`; returns the result and what the
    /// agent received (head included) once the upload ended.
    async fn upload(
        kind: BodyKind,
        declared: &str,
        sent: &[u8],
        hang_up: bool,
    ) -> (Result<(), String>, Vec<u8>) {
        let mut pair = SessionPair::start();
        let stream = pair.open();
        let (mut edge_side, mut visitor) = visitor_pipe();
        visitor.write_all(sent).await.expect("visitor writes");
        if hang_up {
            drop(visitor);
        } else {
            // Keep the visitor's end open; it sends nothing more.
            std::mem::forget(visitor);
        }
        let mut trailers = Declared::default();
        trailers.add(declared.as_bytes());
        let mut upload = Upload::new(kind, trailers);
        upload.restart(Bytes::from_static(b"HEAD\r\n\r\n"));
        let mut buf = BytesMut::new();
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            upload.drive(&mut edge_side, &mut buf, &stream),
        )
        .await
        .expect("the upload ends");
        let result = result.map_err(|e| match e {
            UploadError::Visitor(Some(why)) => why,
            UploadError::Visitor(None) => "visitor gone".to_string(),
            UploadError::Upstream(e) => format!("upstream: {e}"),
        });
        let mut agent = pair.accept().await;
        drop(stream);
        let mut got = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            agent.read_to_end(&mut got),
        )
        .await;
        (result, got)
    }

    #[tokio::test]
    async fn a_length_body_goes_up_exactly() {
        let (result, got) = upload(BodyKind::Length(5), "", b"helloGET /next", false).await;
        assert_eq!(result, Ok(()));
        assert_eq!(got, b"HEAD\r\n\r\nhello", "only the declared length");
    }

    #[tokio::test]
    async fn a_chunked_body_is_reencoded_with_declared_trailers_only() {
        let sent =
            b"3\r\nabc\r\n2;ext=x\r\nde\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\nHost: evil\r\n\r\n";
        let (result, got) = upload(BodyKind::Chunked, "x-sum, host", sent, false).await;
        assert_eq!(result, Ok(()));
        assert_eq!(
            String::from_utf8_lossy(&got),
            "HEAD\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn malformed_framing_is_the_visitors_fault() {
        for sent in [
            &b"3\r\nabc\r\n0\r\nX: a\nGET /smuggled HTTP/1.1\r\n\r\n"[..],
            b"3\r\nabc\r\n0\r\nX: a\r\n folded\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"zz\r\n",
        ] {
            let (result, got) = upload(BodyKind::Chunked, "x", sent, false).await;
            assert!(
                matches!(&result, Err(why) if why.contains("malformed")),
                "{:?}: {result:?}",
                String::from_utf8_lossy(sent)
            );
            assert!(
                !String::from_utf8_lossy(&got).contains("smuggled"),
                "nothing after the fault went up"
            );
        }
    }

    #[tokio::test]
    async fn a_visitor_gone_mid_body_is_reported() {
        let (result, _) = upload(BodyKind::Length(100), "", b"only some", true).await;
        assert_eq!(result, Err("visitor gone".into()));
    }
}

//! The session handshake: the agent's HELLO, answered by WELCOME or REJECT.
//!
//! Every read here has a deadline and every message a size cap, so a client that connects and
//! says nothing (or too much) costs the edge one timer and one bounded buffer.

use crate::ws::{WebSocket, WsMessage};
use bytes::Bytes;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use warren_proto::control::{ControlMessage, Hello, MIN_PROTOCOL_VERSION, Reject, Welcome};
use warren_proto::{Frame, FrameError, PROTOCOL_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no handshake message within {0:?}")]
    Timeout(Duration),
    #[error("connection lost during the handshake: {0}")]
    Transport(String),
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error("invalid handshake: {0}")]
    Invalid(String),
    #[error("the peer speaks tunnel protocol version {0}")]
    UnsupportedVersion(u16),
    #[error("{}", .0.message)]
    Rejected(Reject),
}

impl From<FrameError> for HandshakeError {
    fn from(e: FrameError) -> Self {
        HandshakeError::Invalid(e.to_string())
    }
}

/// Agent side: sends HELLO and waits for the edge's answer.
pub async fn agent_hello<S>(
    ws: &mut WebSocket<S>,
    hello: &Hello,
    timeout: Duration,
) -> Result<Welcome, HandshakeError>
where
    S: AsyncRead + AsyncWrite,
{
    send(ws, &hello.into_frame()).await?;
    match read_frame(ws, timeout).await? {
        Frame::Welcome { body } => {
            let welcome = Welcome::from_json(&body)?;
            welcome
                .settings
                .validate()
                .map_err(|e| HandshakeError::Invalid(e.to_string()))?;
            Ok(welcome)
        }
        Frame::Reject { body } => Err(HandshakeError::Rejected(Reject::from_json(&body)?)),
        other => Err(HandshakeError::Invalid(format!(
            "expected WELCOME or REJECT, got {}",
            other.kind_name()
        ))),
    }
}

/// Edge side: reads and checks the agent's HELLO. An unsupported version is reported as
/// [`HandshakeError::UnsupportedVersion`] so the caller can answer with a REJECT that says
/// what to upgrade ([`Reject::unsupported_version`]).
pub async fn read_hello<S>(
    ws: &mut WebSocket<S>,
    timeout: Duration,
) -> Result<Hello, HandshakeError>
where
    S: AsyncRead + AsyncWrite,
{
    match read_frame(ws, timeout).await? {
        Frame::Hello { version, body } => {
            if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                return Err(HandshakeError::UnsupportedVersion(version));
            }
            let hello = Hello::from_json(&body)?;
            hello
                .settings
                .validate()
                .map_err(|e| HandshakeError::Invalid(e.to_string()))?;
            Ok(hello)
        }
        other => Err(HandshakeError::Invalid(format!(
            "expected HELLO, got {}",
            other.kind_name()
        ))),
    }
}

/// Edge side: accepts the session.
pub async fn send_welcome<S>(ws: &mut WebSocket<S>, welcome: &Welcome) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite,
{
    send(ws, &welcome.into_frame()).await
}

/// Edge side: refuses the session and closes the WebSocket.
pub async fn send_reject<S>(ws: &mut WebSocket<S>, reject: &Reject) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite,
{
    send(ws, &reject.into_frame()).await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
    Ok(())
}

async fn send<S>(ws: &mut WebSocket<S>, frame: &Frame) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite,
{
    ws.send(frame.to_bytes())
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))
}

/// Reads one message holding exactly one frame.
async fn read_frame<S>(ws: &mut WebSocket<S>, timeout: Duration) -> Result<Frame, HandshakeError>
where
    S: AsyncRead + AsyncWrite,
{
    let message = tokio::time::timeout(timeout, ws.read())
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?;
    let data: Bytes = match message {
        Ok(Some(WsMessage::Binary(data))) => data,
        Ok(Some(WsMessage::Close) | None) => return Err(HandshakeError::Closed),
        Ok(Some(other)) => {
            return Err(HandshakeError::Invalid(format!(
                "expected a binary message, got {}",
                message_kind(&other)
            )));
        }
        Err(e) => return Err(HandshakeError::Transport(e.to_string())),
    };
    let mut frames = Frame::decode_message(data)?;
    if frames.len() != 1 {
        return Err(HandshakeError::Invalid(format!(
            "the handshake message must hold one frame, not {}",
            frames.len()
        )));
    }
    Ok(frames.remove(0))
}

fn message_kind(message: &WsMessage) -> &'static str {
    match message {
        WsMessage::Text => "a text message",
        WsMessage::Binary(_) => "a binary message",
        WsMessage::Ping => "a ping",
        WsMessage::Pong => "a pong",
        WsMessage::Close => "a close",
    }
}

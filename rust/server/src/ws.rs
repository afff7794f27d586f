//! The WebSocket endpoint: binary frames of the sync protocol in, replies
//! and relayed commits out. Each connection is two tasks bridged to the hub
//! thread by channels; text frames and oversized frames close the
//! connection with a reason, without affecting anyone else.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};

use crate::AppState;
use crate::hub::{Command, Outgoing};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id (clients and peers share the numbering).
pub fn next_conn() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

pub async fn serve(socket: WebSocket, state: AppState) {
    let conn = next_conn();
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    if state.hub.send(Command::Connect { conn, out: out_tx }).is_err() {
        return;
    }
    tracing::debug!(conn, "connected");
    let writer = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Outgoing::Frame(b) => {
                    if sink.send(WsMessage::Binary(b.into())).await.is_err() {
                        break;
                    }
                }
                Outgoing::Close(reason) => {
                    let reason: String = reason.chars().take(120).collect();
                    let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: close_code::POLICY, reason: reason.into() }))).await;
                    break;
                }
            }
        }
    });
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(WsMessage::Binary(b)) => {
                if state.hub.send(Command::Frame { conn, bytes: b.to_vec() }).is_err() {
                    break;
                }
            }
            Ok(WsMessage::Text(_)) => {
                tracing::warn!(conn, "text frame; the protocol is binary");
                break;
            }
            Ok(WsMessage::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
        if writer.is_finished() {
            break;
        }
    }
    let _ = state.hub.send(Command::Disconnect { conn });
    writer.abort();
    tracing::debug!(conn, "disconnected");
}

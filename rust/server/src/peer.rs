//! Server-to-server replication (`--peer <url>`): a connection to another
//! server's `/sync` endpoint, kept open with back-off, over which the hub
//! reconciles every repository it has open (and relays new commits live)
//! with the same protocol clients use. Two servers peer when either one
//! names the other.

use std::sync::mpsc::Sender;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::hub::{Command, Outgoing};

/// Connects to `url` (`ws://host:port`, `http://…` accepted) and serves the
/// connection until the hub stops; reconnects with back-off.
pub async fn run(url: String, hub: Sender<Command>) {
    let url = format!("{}/sync", url.trim_end_matches('/').replacen("http://", "ws://", 1).replacen("https://", "wss://", 1));
    let mut backoff = Duration::from_millis(250);
    loop {
        match connect_async(&url).await {
            Ok((ws, _)) => {
                backoff = Duration::from_millis(250);
                tracing::info!(%url, "connected to peer");
                let conn = crate::ws::next_conn();
                let (mut sink, mut stream) = ws.split();
                let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
                if hub.send(Command::PeerConnect { conn, out: out_tx }).is_err() {
                    return;
                }
                let writer = tokio::spawn(async move {
                    while let Some(Outgoing::Frame(b)) = out_rx.recv().await {
                        if sink.send(Ws::Binary(b.into())).await.is_err() {
                            break;
                        }
                    }
                });
                while let Some(Ok(msg)) = stream.next().await {
                    if let Ws::Binary(b) = msg
                        && hub.send(Command::Frame { conn, bytes: b.to_vec() }).is_err()
                    {
                        return;
                    }
                }
                writer.abort();
                let _ = hub.send(Command::Disconnect { conn });
                tracing::warn!(%url, "peer connection lost");
            }
            Err(e) => tracing::warn!(%url, error = %e, "cannot reach peer"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

//! What the WebSocket benches share: a client connection and one round trip on it.
#![allow(dead_code)] // each bench uses a different part

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client's WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url` (Nagle off, as a latency-minded client would).
pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async_with_config(url, None, true).await.expect("connect").0
}

/// One request, one response (nothing else is in flight on `ws`).
pub async fn round_trip(ws: &mut Ws, request: &str) -> Value {
    ws.send(Message::text(request)).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

//! A Rust client of a running `codebeaker-server`, over WebSocket JSON-RPC 2.0: create a
//! Deno session, write a file, run code with streamed output, read, close.
//!
//! Start a server (`./scripts/serve.sh`), then:
//! `cargo run --example server_client -- [ws://127.0.0.1:5000/ws/jsonrpc]`
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Error = Box<dyn std::error::Error>;

/// Sends one request and waits for its response, printing `session.output` notifications.
async fn call(ws: &mut Socket, id: u64, method: &str, params: Value) -> Result<Value, Error> {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::text(request.to_string())).await?;
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame? else { continue };
        let message: Value = serde_json::from_str(&text)?;
        if message["method"] == "session.output" {
            print!(
                "  [{}] {}",
                message["params"]["stream"].as_str().unwrap_or("?"),
                message["params"]["data"].as_str().unwrap_or("")
            );
        } else if message["id"] == id {
            if let Some(error) = message.get("error") {
                return Err(format!("{method} failed: {error}").into());
            }
            return Ok(message["result"].clone());
        }
    }
    Err("the server closed the connection".into())
}

/// `session.execute`, returning the command's result when it succeeded.
async fn execute(ws: &mut Socket, id: u64, session: &str, command: Value, stream: bool) -> Result<Value, Error> {
    let envelope =
        call(ws, id, "session.execute", json!({"sessionId": session, "command": command, "stream": stream})).await?;
    if envelope["success"] != true {
        return Err(format!("{} failed: {}", command["type"], envelope["error"]).into());
    }
    Ok(envelope["result"].clone())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:5000/ws/jsonrpc".into());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;

    let session = call(&mut ws, 1, "session.create", json!({"language": "deno"})).await?;
    let id = session["sessionId"].as_str().ok_or("no sessionId")?.to_owned();
    println!("created deno session {id}");

    let source = "export function fib(n: number): number { return n < 2 ? n : fib(n - 1) + fib(n - 2); }";
    let written =
        execute(&mut ws, 2, &id, json!({"type": "write_file", "path": "fib.ts", "content": source}), false).await?;
    println!("wrote {} ({} bytes)", written["path"], written["bytes"]);

    let code = "const { fib } = await import('./fib.ts');\nfor (const n of [10, 20, 25]) console.log(`fib(${n}) = ${fib(n)}`);\nawait Deno.writeTextFile('fib.txt', String(fib(25)));";
    let output = execute(&mut ws, 3, &id, json!({"type": "execute_code", "code": code}), true).await?;
    assert_eq!(output, "fib(10) = 55\nfib(20) = 6765\nfib(25) = 75025", "unexpected output");

    let read = execute(&mut ws, 4, &id, json!({"type": "read_file", "path": "fib.txt"}), false).await?;
    assert_eq!(read["content"], "75025");
    println!("read fib.txt: {}", read["content"]);

    let closed = call(&mut ws, 5, "session.close", json!({"sessionId": id})).await?;
    assert_eq!(closed, json!({"sessionId": id, "closed": true}));
    println!("closed");
    Ok(())
}

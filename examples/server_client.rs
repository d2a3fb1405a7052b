//! A Rust client of a running `codebeaker-server` through `codebeaker-client` (typed,
//! over WebSocket JSON-RPC 2.0): create a Deno session, write a file, run code with
//! streamed output, read, list, close.
//!
//! Start a server (`./scripts/serve.sh`), then:
//! `cargo run --example server_client -- [ws://127.0.0.1:5000/ws/jsonrpc] [token]`
use codebeaker::{Command, Language, SessionConfig};
use codebeaker_client::{Client, OutputEvent};
use futures::StreamExt as _;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:5000/ws/jsonrpc".into());
    let mut connect = Client::connect(url);
    if let Some(token) = args.next() {
        connect = connect.token(token);
    }
    let client = connect.await?;

    let session = client.create(SessionConfig::new(Language::TypeScript)).await?;
    println!("created deno session {}", session.id());

    let source = "export function fib(n: number): number { return n < 2 ? n : fib(n - 1) + fib(n - 2); }";
    let written = session.execute(Command::write_file("fib.ts", source)?).await?.into_result()?;
    let written = written.into_write_file().ok_or("write_file gave another result")?;
    println!("wrote {} ({} bytes)", written.path, written.bytes);

    let code = "const { fib } = await import('./fib.ts');\nfor (const n of [10, 20, 25]) console.log(`fib(${n}) = ${fib(n)}`);\nawait Deno.writeTextFile('fib.txt', String(fib(25)));";
    let mut events = session.execute_stream(Command::code(code)).await?;
    let mut outcome = None;
    while let Some(event) = events.next().await {
        match event {
            OutputEvent::Output(chunk) => print!("  [{:?}] {}", chunk.stream, chunk.data),
            OutputEvent::Finished(finished) => outcome = Some(finished?),
        }
    }
    let outcome = outcome.ok_or("the stream ended without an outcome")?;
    assert!(outcome.is_success(), "the code should run: {:?}", outcome.error_message());
    assert_eq!(outcome.output(), Some("fib(10) = 55\nfib(20) = 6765\nfib(25) = 75025"), "unexpected output");

    let read = session.execute(Command::read_file("fib.txt")?).await?.into_result()?;
    let read = read.into_read_file().ok_or("read_file gave another result")?;
    assert_eq!(read.content, "75025");
    println!("read fib.txt: {}", read.content);

    let listed = client.list().await?;
    assert!(listed.iter().any(|info| info.session_id == *session.id()), "the session should be listed");
    println!("{} session(s) open", listed.len());

    session.close().await?;
    println!("closed");
    Ok(())
}

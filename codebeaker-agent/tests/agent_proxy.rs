//! The agent's egress proxy: a program's HTTP request and CONNECT travel to the host as
//! tunnels; the host's refusal reaches the program as a 403 with the host's message;
//! without a host deciding, egress is off; a tunnel over its byte cap is cut.
//! Destinations are a server on this machine's loopback only.

mod support;

use codebeaker_agent::client::Relay;
use codebeaker_agent::protocol::{ExecCommand, ExecRequest};
use support::Agent;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A destination that answers every request with `body` and reports its request lines.
async fn destination(body: &'static str) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&chunk[..n]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let _ = tx.send(text.lines().next().unwrap_or_default().to_owned());
                let response =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

async fn python(agent: &Agent, code: &str) -> String {
    let argv = vec!["python3".into(), "-c".into(), code.into()];
    let out = agent.client.exec_collect(ExecRequest::new(ExecCommand::Argv(argv), 20_000, 1 << 16)).await.unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const FETCH: &str = "import sys, urllib.request, urllib.error\n\
try:\n    print(urllib.request.urlopen(sys.argv[1] if len(sys.argv) > 1 else URL, timeout=20).read().decode())\n\
except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode().strip())\n\
except Exception as e:\n    print(type(e).__name__)\n";

fn fetch(url: &str) -> String {
    format!("URL = {url:?}\n{FETCH}")
}

#[tokio::test]
async fn plain_http_and_connect_go_through_the_host_and_refusals_say_why() {
    let agent = Agent::start().await;
    // Nobody on the host decides yet: egress is off, and the program is told so.
    let off = python(&agent, &fetch("http://allowed.example/")).await;
    assert!(off.starts_with("403 egress to allowed.example:80 is not allowed: egress is off"), "{off}");

    let (dest, mut seen) = destination("hello").await;
    let (capped_dest, _) = destination("a body far longer than the cap of this tunnel").await;
    let mut requests = agent.client.take_tunnel_requests();
    let client = agent.client.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let client = client.clone();
            tokio::spawn(async move {
                let (host, port) = (request.open.host.as_str(), request.open.port);
                let target = match host {
                    "allowed.example" => dest,
                    "capped.example" => capped_dest,
                    _ => {
                        let message = format!("egress to {host}:{port} is not allowed by policy");
                        return client.refuse_tunnel(request.id, message).await.unwrap();
                    }
                };
                let stream = TcpStream::connect(target).await.unwrap();
                let cap = if host == "capped.example" { 80 } else { 1 << 20 };
                let relay = Relay { max_bytes: Some(cap), ..Relay::default() };
                client.relay_tunnel(request.id, stream, relay).await.unwrap();
            });
        }
    });

    let fetched = python(&agent, &fetch("http://allowed.example/path?q=1")).await;
    assert_eq!(fetched, "hello\n");
    assert_eq!(seen.recv().await.unwrap(), "GET /path?q=1 HTTP/1.1", "the destination gets an origin-form request");

    let refused = python(&agent, &fetch("http://blocked.example:8080/")).await;
    assert_eq!(refused, "403 egress to blocked.example:8080 is not allowed by policy\n");

    let connect = "import os, socket\n\
proxy = os.environ['HTTPS_PROXY'].rsplit(':', 1)\n\
s = socket.create_connection((proxy[0].split('//')[1], int(proxy[1])))\n\
s.sendall(b'CONNECT allowed.example:443 HTTP/1.1\\r\\nHost: allowed.example:443\\r\\n\\r\\n')\n\
reply = b''\n\
while b'\\r\\n\\r\\n' not in reply:\n    reply += s.recv(1024)\n\
print(reply.split(b'\\r\\n')[0].decode())\n\
s.sendall(b'GET /tunnelled HTTP/1.1\\r\\nHost: allowed.example\\r\\n\\r\\n')\n\
data = b''\n\
while True:\n    chunk = s.recv(1024)\n    if not chunk: break\n    data += chunk\n\
print(data.split(b'\\r\\n\\r\\n', 1)[1].decode())\n";
    let tunnelled = python(&agent, connect).await;
    assert_eq!(tunnelled, "HTTP/1.1 200 Connection established\nhello\n");
    assert_eq!(seen.recv().await.unwrap(), "GET /tunnelled HTTP/1.1");

    let capped = python(&agent, &fetch("http://capped.example/")).await;
    assert!(!capped.contains("a body far longer"), "a tunnel over its cap is cut: {capped}");
}

/// Domain fronting through an allowed name: a CONNECT whose TLS ClientHello names another
/// server (SNI), or a plain request whose `Host` names another host, is refused by the
/// host before any byte reaches the destination, and counts as a policy refusal.
#[tokio::test]
async fn a_program_naming_another_host_inside_an_allowed_tunnel_is_refused() {
    use codebeaker::egress::EgressRules;
    use codebeaker::{Allowlist, Language, NetPolicy};

    let agent = Agent::start().await;
    let (dest, mut seen) = destination("hello").await;
    let rules = EgressRules::for_session(&NetPolicy::default(), Language::TypeScript, Some(&Allowlist::All));
    let mut requests = agent.client.take_tunnel_requests();
    let (client, judge) = (agent.client.clone(), rules.clone());
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let (client, judge) = (client.clone(), judge.clone());
            tokio::spawn(async move {
                // Every name leads to the loopback destination; the opening is judged as
                // the Docker backend judges it.
                let stream = TcpStream::connect(dest).await.unwrap();
                let (host, port) = (request.open.host.clone(), request.open.port);
                let opening = Box::new(move |bytes: &[u8]| judge.check_opening(&host, port, bytes));
                let relay = Relay { opening: Some(opening), ..Relay::default() };
                client.relay_tunnel(request.id, stream, relay).await.unwrap();
            });
        }
    });

    let tls = "import os, socket, ssl\n\
proxy = os.environ['HTTPS_PROXY'].rsplit(':', 1)\n\
s = socket.create_connection((proxy[0].split('//')[1], int(proxy[1])))\n\
s.sendall(b'CONNECT allowed.example:443 HTTP/1.1\\r\\nHost: allowed.example:443\\r\\n\\r\\n')\n\
reply = b''\n\
while b'\\r\\n\\r\\n' not in reply:\n    reply += s.recv(1024)\n\
print(reply.split(b'\\r\\n')[0].decode())\n\
try:\n    ssl.create_default_context().wrap_socket(s, server_hostname='evil.example')\n\
except ssl.SSLError as e:\n    print(e.reason)\n";
    let fronted = python(&agent, tls).await;
    assert_eq!(fronted, "HTTP/1.1 200 Connection established\nTLSV1_ALERT_ACCESS_DENIED\n");

    let host_header = "import urllib.request, urllib.error\n\
request = urllib.request.Request('http://allowed.example/x', headers={'Host': 'evil.example'})\n\
try:\n    print(urllib.request.urlopen(request, timeout=20).read().decode())\n\
except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode().strip())\n";
    let refused = python(&agent, host_header).await;
    assert_eq!(
        refused,
        "403 egress to allowed.example:80 is refused: the HTTP Host header names \"evil.example\", not allowed.example\n"
    );
    assert_eq!(rules.take_refused(), 2, "both count as policy refusals");
    assert!(seen.try_recv().is_err(), "nothing reached the destination");

    // The same request naming its own host goes through.
    let fetched = python(&agent, &fetch("http://allowed.example/ok")).await;
    assert_eq!(fetched, "hello\n");
    assert_eq!(seen.recv().await.unwrap(), "GET /ok HTTP/1.1");
}

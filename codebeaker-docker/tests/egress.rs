//! Packages through the egress tunnel, on the real engine and the real registries (PyPI
//! and npm are the only destinations besides loopback): `pip install` then `import`,
//! `npm install` then `require`, and refusals answered by the proxy with the policy's
//! words (a name outside the allowlist, a loopback address, egress off).

mod common;

use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Backend, Command, Language, ManagerConfig, NetPolicy, Policy, SessionConfig, SessionManager};
use common::{run_with, sh, shell};

/// A manager under the default policy (the registries of each language, the host's trust
/// store), with egress on or off: the seed scenario must work as an operator gets it out
/// of the box. One exception the operator states: where the registries resolve into a
/// documentation range (this project's build machines reach them through 203.0.113/24,
/// which egress refuses as not public), exactly those addresses are listed in
/// `allowed_private`, as `scripts/serve.sh` tells an operator to.
fn manager(backend: &Arc<codebeaker_docker::DockerBackend>, egress: bool) -> SessionManager {
    let net = NetPolicy { egress, allowed_private: registry_documentation_addresses(), ..NetPolicy::default() };
    let policy = Policy { net, ..Policy::default() };
    SessionManager::new(vec![backend.clone() as Arc<dyn Backend>], ManagerConfig { policy, ..Default::default() })
}

/// The addresses of the registries these tests install from that lie in documentation
/// ranges, each as a single-address network.
fn registry_documentation_addresses() -> Vec<String> {
    use std::net::ToSocketAddrs as _;
    let mut addresses: Vec<String> = ["pypi.org", "files.pythonhosted.org", "registry.npmjs.org"]
        .iter()
        .filter_map(|host| (*host, 443).to_socket_addrs().ok())
        .flatten()
        .map(|address| address.ip())
        .filter(|ip| codebeaker::egress::classify(*ip) == Some(codebeaker::egress::AddressClass::Documentation))
        .map(|ip| ip.to_string())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

const LONG: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn packages_install_through_the_egress_tunnel() {
    let Some(backend) = common::agent_backend("egress", 0).await else { return };
    let m = manager(&backend, true);
    let python = m.create(SessionConfig::new(Language::Python)).await.expect("python").session_id;
    let pip = run_with(&m, &python, Command::shell("pip", ["install", "--no-cache-dir", "requests"]), LONG).await;
    assert_eq!(shell(&pip).exit_code, 0, "{:?}", pip.to_json());
    eprintln!("pip install --no-cache-dir requests took {} ms", pip.duration_ms);
    let script = "import requests\nprint('requests version:', requests.__version__)";
    let used = run_with(&m, &python, Command::code(script), LONG).await;
    let output = used.to_json()["result"].as_str().unwrap_or_default().to_owned();
    assert!(output.starts_with("requests version: "), "{:?}", used.to_json());

    // A name outside the allowlist, and loopback: refused by the proxy, naming the rule
    // (plain HTTP, so that the program sees the proxy's answer; a refused CONNECT shows
    // as `Tunnel connection failed: 403`).
    let probe = |url: &str| {
        format!("python3 -c \"import urllib.request as u\ntry:\n    u.urlopen('{url}', timeout=20)\nexcept Exception as e:\n    print(e, getattr(e, 'read', lambda: b'')().decode())\"")
    };
    let outside = run_with(&m, &python, sh(&probe("http://example.org/")), LONG).await;
    let said = &shell(&outside).stdout;
    assert!(said.contains("403") && said.contains("example.org"), "{said}");
    // Each refusal is reported with the command that met it (and counted by the server).
    assert_eq!(outside.to_json()["usage"]["egressRefused"], 1, "{:?}", outside.to_json());
    let loopback = run_with(&m, &python, sh(&probe("http://127.0.0.2:8080/")), LONG).await;
    assert!(shell(&loopback).stdout.contains("403"), "{:?}", loopback.to_json());
    assert_eq!(loopback.to_json()["usage"]["egressRefused"], 1, "{:?}", loopback.to_json());

    // Fronting through an allowed name: a ClientHello naming another server is refused on
    // the host before a byte reaches the registry, and counted like any refusal.
    let fronting = "import os, socket, ssl\n\
host, port = os.environ['HTTPS_PROXY'].rsplit('/', 1)[1].rsplit(':', 1)\n\
s = socket.create_connection((host, int(port)))\n\
s.sendall(b'CONNECT pypi.org:443 HTTP/1.1\\r\\nHost: pypi.org:443\\r\\n\\r\\n')\n\
reply = b''\n\
while b'\\r\\n\\r\\n' not in reply:\n    reply += s.recv(1024)\n\
try:\n    ssl.create_default_context().wrap_socket(s, server_hostname='evil.example')\n\
except ssl.SSLError as e:\n    print(reply.split(b'\\r\\n')[0].decode(), e.reason)\n";
    let fronted = run_with(&m, &python, Command::code(fronting), LONG).await;
    let said = fronted.to_json()["result"].as_str().unwrap_or_default().to_owned();
    assert_eq!(said.trim(), "HTTP/1.1 200 Connection established TLSV1_ALERT_ACCESS_DENIED", "{:?}", fronted.to_json());
    assert_eq!(fronted.to_json()["usage"]["egressRefused"], 1, "{:?}", fronted.to_json());

    let javascript = m.create(SessionConfig::new(Language::JavaScript)).await.expect("javascript").session_id;
    let npm = run_with(&m, &javascript, Command::shell("npm", ["install", "is-number@7"]), LONG).await;
    assert_eq!(shell(&npm).exit_code, 0, "{:?}", npm.to_json());
    let required = run_with(&m, &javascript, Command::code("require('is-number')(5)"), LONG).await;
    assert_eq!(required.to_json()["result"], "true", "{:?}", required.to_json());
    m.shutdown().await;

    // Egress off: the proxy says so at once.
    let off = manager(&backend, false);
    let id = off.create(SessionConfig::new(Language::Python)).await.expect("python").session_id;
    let refused = run_with(&off, &id, sh(&probe("http://pypi.org/simple/")), LONG).await;
    let said = &shell(&refused).stdout;
    assert!(said.contains("403") && said.contains("egress is off"), "{said}");
    assert_eq!(refused.to_json()["usage"]["egressRefused"], 1, "{:?}", refused.to_json());
    off.shutdown().await;
    common::finish(backend).await;
}

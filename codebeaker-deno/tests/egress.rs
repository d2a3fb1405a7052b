//! `fetch` under the operator's network policy (the same egress rules Docker sessions
//! use): loopback, private, link-local and metadata addresses are refused by default (IP
//! literals, names that resolve to them, and redirects to them), before any traffic;
//! the operator can allow a network; egress can be turned off; per-session connection
//! and byte caps cut what goes beyond. Only loopback servers of the test are contacted.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use codebeaker::{Allowlist, NetPolicy, Policy};
use codebeaker_deno::DenoIsolation;
use codebeaker_deno::DenoPermissions;
use common::*;

/// A loopback HTTP server answering each request with `respond(request line)` (a full
/// HTTP response), after `delay`; counts the requests it received.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn server(delay: Duration, respond: impl Fn(&str) -> String + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                let read = stream.read(&mut buffer).unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
                std::thread::sleep(delay);
                let _ = stream.write_all(respond(request.lines().next().unwrap_or_default()).as_bytes());
            });
        }
    });
    Server { port, hits }
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

fn redirect(location: &str) -> String {
    format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

fn any_host() -> DenoPermissions {
    DenoPermissions { allow_net: Allowlist::All, ..DenoPermissions::default() }
}

fn policy(net: NetPolicy) -> Policy {
    Policy { net, ..Policy::default() }
}

fn loopback_allowed() -> NetPolicy {
    NetPolicy { allowed_private: vec!["127.0.0.1/32".into()], ..NetPolicy::default() }
}

async fn non_public_addresses_are_refused_by_default_before_any_traffic(isolation: DenoIsolation) {
    let target = server(Duration::ZERO, |_| ok("secret"));
    let port = target.port;
    let (_root, _backend, manager) = manager_in(isolation);
    let id = session_with(&manager, any_host()).await;
    let refused = error(&manager, &id, &format!("await fetch('http://127.0.0.1:{port}/')")).await;
    assert!(
        refused.starts_with(&format!(
            "PermissionDenied: Requires net access to \"127.0.0.1:{port}\", refused by the operator's policy:"
        )) && refused.contains("loopback"),
        "{refused}"
    );
    // A name is judged by what it resolves to.
    let by_name = error(&manager, &id, &format!("await fetch('http://localhost:{port}/')")).await;
    assert!(by_name.starts_with("PermissionDenied") && by_name.contains("resolves to 127.0.0.1"), "{by_name}");
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let message = error(&manager, &id, &format!("await fetch('{url}')")).await;
        assert!(
            message.starts_with("PermissionDenied") && message.contains("refused by the operator's policy"),
            "{url}: {message}"
        );
    }
    let caught = output(&manager, &id, &format!("try {{ await fetch('http://127.0.0.1:{port}/') }} catch (e) {{ console.log(e instanceof Deno.errors.PermissionDenied) }}")).await;
    assert_eq!(caught, "true");
    assert_eq!(target.hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn non_public_addresses_are_refused_by_default_before_any_traffic_in_a_worker_process() {
    non_public_addresses_are_refused_by_default_before_any_traffic(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_public_addresses_are_refused_by_default_before_any_traffic_in_a_thread() {
    non_public_addresses_are_refused_by_default_before_any_traffic(DenoIsolation::Thread).await;
}

async fn the_operator_can_allow_a_network_and_redirects_are_judged_again(isolation: DenoIsolation) {
    let target = server(Duration::ZERO, |line| ok(&format!("hello: {line}")));
    let (port, hits) = (target.port, target.hits.clone());
    let hops = server(Duration::ZERO, move |line| {
        if line.contains("/to-other-loopback") {
            redirect(&format!("http://127.0.0.2:{port}/"))
        } else if line.contains("/to-metadata") {
            redirect("http://169.254.169.254/latest/meta-data/")
        } else if line.contains("/to-name") {
            redirect(&format!("http://localhost:{port}/by-name"))
        } else {
            redirect(&format!("http://127.0.0.1:{port}/landed"))
        }
    });
    let (_root, _backend, manager) = manager_with_policy_in(isolation, policy(loopback_allowed()));
    let id = session_with(&manager, any_host()).await;
    let fetched = output(
        &manager,
        &id,
        &format!("const r = await fetch('http://127.0.0.1:{}/go'); console.log(r.status, await r.text())", hops.port),
    )
    .await;
    assert_eq!(fetched, "200 hello: GET /landed HTTP/1.1");
    // 127.0.0.1/32 is allowed, and localhost resolves there.
    let by_name =
        output(&manager, &id, &format!("console.log((await fetch('http://127.0.0.1:{}/to-name')).status)", hops.port))
            .await;
    assert_eq!(by_name, "200");
    let before = hits.load(Ordering::SeqCst);
    for (path, address) in [("to-other-loopback", "127.0.0.2"), ("to-metadata", "169.254.169.254")] {
        let message = error(&manager, &id, &format!("await fetch('http://127.0.0.1:{}/{path}')", hops.port)).await;
        assert!(
            message.starts_with("PermissionDenied: Requires net access to") && message.contains(address),
            "{path}: {message}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), before, "refused redirects sent nothing");
    // `allowNet` still applies on top of the operator's policy, to every hop.
    let only = session_with(
        &manager,
        DenoPermissions { allow_net: Allowlist::Only(vec![format!("127.0.0.1:{}", hops.port)]), ..Default::default() },
    )
    .await;
    let message = error(&manager, &only, &format!("await fetch('http://127.0.0.1:{}/go')", hops.port)).await;
    assert_eq!(message, format!("PermissionDenied: Requires net access to \"127.0.0.1:{port}\""));
    for id in [id, only] {
        manager.close(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_can_allow_a_network_and_redirects_are_judged_again_in_a_worker_process() {
    the_operator_can_allow_a_network_and_redirects_are_judged_again(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_can_allow_a_network_and_redirects_are_judged_again_in_a_thread() {
    the_operator_can_allow_a_network_and_redirects_are_judged_again(DenoIsolation::Thread).await;
}

async fn egress_off_and_the_caps_give_clear_errors(isolation: DenoIsolation) {
    let slow = server(Duration::from_millis(400), |_| ok(&"x".repeat(10_000)));
    let port = slow.port;
    let off = NetPolicy { egress: false, ..loopback_allowed() };
    let (_root, _backend, manager) = manager_with_policy_in(isolation, policy(off));
    let id = session_with(&manager, any_host()).await;
    let message = error(&manager, &id, &format!("await fetch('http://127.0.0.1:{port}/')")).await;
    assert!(message.starts_with("PermissionDenied") && message.contains("egress is off"), "{message}");
    manager.close(&id).await.unwrap();

    let capped = NetPolicy { max_connections: 1, max_bytes: 25_000, ..loopback_allowed() };
    let (_root, _backend, manager) = manager_with_policy_in(isolation, policy(capped));
    let id = session_with(&manager, any_host()).await;
    let both = output(&manager, &id, &format!("const results = await Promise.allSettled([1, 2].map(() => fetch('http://127.0.0.1:{port}/').then((r) => r.text())));\nconsole.log(results.map((r) => r.status === 'fulfilled' ? r.value.length : String(r.reason)).join(' | '));")).await;
    assert!(both.contains("10000") && both.contains("already has 1 connections open (net.max-connections)"), "{both}");
    // 10 kB more fits the 25 kB cap once; the next response is cut.
    output(&manager, &id, &format!("await (await fetch('http://127.0.0.1:{port}/')).text()")).await;
    let cut = error(&manager, &id, &format!("await (await fetch('http://127.0.0.1:{port}/')).text()")).await;
    assert!(cut.starts_with("PermissionDenied") && cut.contains("egress byte cap of 25000 bytes reached"), "{cut}");
    manager.close(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_off_and_the_caps_give_clear_errors_in_a_worker_process() {
    egress_off_and_the_caps_give_clear_errors(DenoIsolation::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_off_and_the_caps_give_clear_errors_in_a_thread() {
    egress_off_and_the_caps_give_clear_errors(DenoIsolation::Thread).await;
}

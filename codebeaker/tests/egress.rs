//! The egress policy shared by Deno's `fetch` and the Docker egress proxy. Nothing here
//! sends traffic anywhere but loopback: refused destinations are refused before any
//! connection, and the connections that are made go to local listeners.

use codebeaker::egress::{EgressDenied, EgressRules};
use codebeaker::{Allowlist, Language, NetPolicy};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

fn deno(net: &NetPolicy, allow_net: Allowlist) -> EgressRules {
    EgressRules::for_session(net, Language::TypeScript, Some(&allow_net))
}

fn loopback_allowed() -> NetPolicy {
    NetPolicy { allowed_private: vec!["127.0.0.1/32".into()], ..NetPolicy::default() }
}

/// A TCP echo server on loopback; returns its port.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn names_off_the_allowlist_are_refused_before_any_lookup() {
    let rules = EgressRules::for_session(&NetPolicy::default(), Language::Python, None);
    // `.invalid` never resolves: a lookup would have failed with a resolver error instead.
    for (host, port) in [("not-a-registry.invalid", 443), ("pypi.org.invalid", 443), ("pypi.org", 22)] {
        let refused = rules.connect(host, port).await.unwrap_err();
        assert!(matches!(refused, EgressDenied::NotAllowed { .. }), "{host}:{port}: {refused:?}");
        assert_eq!(refused.to_string(), format!("egress to {host}:{port} is not allowed by policy"));
        assert!(refused.is_policy());
        assert!(matches!(rules.resolve(host, port).await, Err(EgressDenied::NotAllowed { .. })));
    }
    assert_eq!(rules.open_connections(), 0, "a refused connection holds no place");
}

#[tokio::test]
async fn each_language_defaults_to_its_package_registries_on_web_ports() {
    let net = NetPolicy::default();
    let python = EgressRules::for_session(&net, Language::Python, None);
    for (host, port) in [("pypi.org", 443), ("PYPI.org.", 80), ("files.pythonhosted.org", 443)] {
        python.check_name(host, port).unwrap_or_else(|e| panic!("{host}:{port}: {e}"));
    }
    assert!(python.check_name("registry.npmjs.org", 443).is_err(), "another language's registry");
    assert!(python.check_name("pypi.org", 8080).is_err(), "only ports 443 and 80");
    let node = EgressRules::for_session(&net, Language::JavaScript, None);
    node.check_name("registry.npmjs.org", 443).unwrap();
    let go = EgressRules::for_session(&net, Language::Go, None);
    for host in ["proxy.golang.org", "sum.golang.org"] {
        go.check_name(host, 443).unwrap();
    }
    // Registry hosts only: a general-purpose object store would be a way out for data.
    assert!(go.check_name("storage.googleapis.com", 443).is_err());
    EgressRules::for_session(&net, Language::CSharp, None).check_name("api.nuget.org", 443).unwrap();

    // The operator's list replaces the registries.
    let custom = NetPolicy { allowed_hosts: vec!["*.corp.example:8443".into()], ..NetPolicy::default() };
    let python = EgressRules::for_session(&custom, Language::Python, None);
    python.check_name("mirror.corp.example", 8443).unwrap();
    assert!(python.check_name("pypi.org", 443).is_err());
    assert!(python.check_name("corp.example", 8443).is_err(), "*.suffix names what is below the suffix");
}

#[tokio::test]
async fn deno_follows_allow_net_within_the_operators_rules() {
    let net = NetPolicy::default();
    let none = deno(&net, Allowlist::None);
    assert!(matches!(none.check_name("example.org", 443), Err(EgressDenied::NotAllowed { .. })));
    let some = deno(&net, Allowlist::Only(vec!["api.example.org".into(), "example.net:8443".into()]));
    some.check_name("api.example.org", 443).unwrap();
    some.check_name("example.net", 8443).unwrap();
    assert!(some.check_name("example.net", 443).is_err());
    assert!(some.check_name("example.org", 443).is_err());
    let all = deno(&net, Allowlist::All);
    all.check_name("anything.example", 1234).unwrap();
    // Operator rules bound even `allowNet: true`.
    let bounded = NetPolicy { allowed_hosts: vec!["example.org".into()], ..NetPolicy::default() };
    let all = deno(&bounded, Allowlist::All);
    all.check_name("example.org", 443).unwrap();
    assert!(all.check_name("example.net", 443).is_err());
}

#[tokio::test]
async fn loopback_private_and_metadata_addresses_are_refused() {
    let rules = deno(&NetPolicy::default(), Allowlist::All);
    let refused = rules.connect("127.0.0.1", 8080).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        "egress to 127.0.0.1:8080 is refused: loopback address (allow it with net.allowed-private)"
    );
    for (host, label) in [
        ("169.254.169.254", "cloud metadata address"),
        ("[fd00:ec2::254]", "cloud metadata address"),
        ("100.100.100.200", "cloud metadata address"),
        ("[::1]", "loopback address"),
        ("[::ffff:127.0.0.1]", "loopback address"),
        ("10.0.0.1", "private address"),
        ("192.168.1.1", "private address"),
        ("169.254.10.10", "link-local address"),
        ("100.64.1.1", "carrier-grade NAT address"),
        ("0.0.0.0", "unspecified address"),
    ] {
        let refused = rules.connect(host, 80).await.unwrap_err();
        assert!(matches!(refused, EgressDenied::Address { .. }), "{host}: {refused:?}");
        assert!(refused.to_string().contains(label), "{host}: {refused}");
        assert!(matches!(rules.check_name(host, 80), Err(EgressDenied::Address { .. })), "checked without DNS");
    }
    // Numeric spellings the resolver would read as 127.0.0.1 are not names.
    for host in ["2130706433", "127.1", "0x7f.0.0.1"] {
        assert!(matches!(rules.check_name(host, 80), Err(EgressDenied::InvalidHost { .. })), "{host}");
    }
    // A name is judged by what it resolves to (`localhost` comes from /etc/hosts).
    let refused = rules.resolve("localhost", 80).await.unwrap_err();
    assert!(refused.to_string().contains("localhost resolves to"), "{refused}");
    assert!(refused.to_string().contains("loopback address"), "{refused}");
}

#[tokio::test]
async fn an_allowed_private_network_lets_a_loopback_listener_through() {
    let port = echo_server().await;
    let rules = deno(&loopback_allowed(), Allowlist::All);
    let mut stream = rules.connect("127.0.0.1", port).await.unwrap();
    assert_eq!(stream.peer_addr().port(), port);
    stream.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"ping");
    assert_eq!(rules.bytes_used(), 8, "both directions count");
    assert!(rules.connect("127.0.0.2", port).await.is_err(), "only the listed network is opened");
    let resolved = rules.resolve("localhost", port).await;
    match resolved {
        Ok(addresses) => assert!(addresses.iter().all(|a| a.ip().to_string() == "127.0.0.1"), "{addresses:?}"),
        // `localhost` may also resolve to ::1, which was not allowed: refused whole.
        Err(refused) => assert!(refused.to_string().contains("::1"), "{refused}"),
    }
}

#[tokio::test]
async fn the_byte_cap_cuts_a_tunnel_with_a_clear_error() {
    let port = echo_server().await;
    let net = NetPolicy { max_bytes: 1000, ..loopback_allowed() };
    let rules = deno(&net, Allowlist::All);
    let mut stream = rules.connect("127.0.0.1", port).await.unwrap();
    stream.write_all(&[b'x'; 600]).await.unwrap();
    let mut received = 0;
    let mut buffer = [0u8; 256];
    let error = loop {
        match stream.read(&mut buffer).await {
            Ok(0) => panic!("the echo server closed early"),
            Ok(read) => received += read,
            Err(error) => break error,
        }
    };
    assert_eq!(received, 400, "600 bytes out and 400 back make the cap");
    assert_eq!(error.to_string(), "egress byte cap of 1000 bytes reached");
    let write = stream.write_all(b"more").await.unwrap_err();
    assert_eq!(write.to_string(), "egress byte cap of 1000 bytes reached");
    assert_eq!(rules.bytes_used(), 1000);
    drop(stream);
    // The cap is per session: clones of the rules share it.
    let refused = rules.clone().connect("127.0.0.1", port).await.unwrap_err();
    assert!(refused.to_string().contains("egress byte cap of 1000 bytes reached"), "{refused}");
}

#[tokio::test]
async fn the_connection_cap_counts_open_connections_of_the_session() {
    let port = echo_server().await;
    let net = NetPolicy { max_connections: 2, ..loopback_allowed() };
    let rules = deno(&net, Allowlist::All);
    let first = rules.connect("127.0.0.1", port).await.unwrap();
    let _second = rules.clone().connect("127.0.0.1", port).await.unwrap();
    let refused = rules.connect("127.0.0.1", port).await.unwrap_err();
    assert!(matches!(refused, EgressDenied::ConnectionCap { limit: 2, .. }), "{refused:?}");
    assert!(refused.to_string().contains("net.max-connections"), "{refused}");
    drop(first);
    let _third = rules.connect("127.0.0.1", port).await.expect("a closed connection frees its place");
    // Another session has its own counters.
    let other = deno(&net, Allowlist::All);
    let _elsewhere = other.connect("127.0.0.1", port).await.unwrap();
    assert_eq!((rules.open_connections(), other.open_connections()), (2, 1));
}

#[tokio::test]
async fn egress_off_refuses_everything_at_once() {
    let net = NetPolicy { egress: false, ..loopback_allowed() };
    for rules in [EgressRules::for_session(&net, Language::Python, None), deno(&net, Allowlist::All)] {
        assert!(!rules.is_enabled());
        for (host, port) in [("pypi.org", 443), ("127.0.0.1", 80)] {
            let refused = rules.connect(host, port).await.unwrap_err();
            assert!(
                refused.to_string().contains("egress is off for this session (operator policy)"),
                "{host}: {refused}"
            );
        }
    }
}

#[tokio::test]
async fn documentation_and_benchmarking_ranges_are_not_public_unless_the_operator_lists_them() {
    let rules = deno(&NetPolicy::default(), Allowlist::All);
    for (host, label) in [
        ("192.0.2.10", "documentation address"),
        ("198.51.100.7", "documentation address"),
        ("203.0.113.80", "documentation address"),
        ("[2001:db8::1]", "documentation address"),
        ("198.18.0.1", "reserved address"),
    ] {
        let refused = rules.check_name(host, 443).unwrap_err();
        assert!(matches!(refused, EgressDenied::Address { .. }), "{host}: {refused:?}");
        assert!(refused.to_string().contains(label), "{host}: {refused}");
    }
    assert_eq!(rules.take_refused(), 5, "each counts as a policy refusal");
    // The operator's policy says so: exactly the listed range opens.
    let net = NetPolicy { allowed_private: vec!["203.0.113.0/24".into()], ..NetPolicy::default() };
    let rules = deno(&net, Allowlist::All);
    rules.check_name("203.0.113.80", 443).unwrap();
    assert!(rules.check_name("198.51.100.7", 443).is_err());
}

#[tokio::test]
async fn bytes_charged_while_queued_count_once_against_the_cap() {
    let port = echo_server().await;
    let net = NetPolicy { max_bytes: 1000, ..loopback_allowed() };
    let rules = deno(&net, Allowlist::All);
    let mut stream = rules.connect("127.0.0.1", port).await.unwrap();
    let meter = stream.meter();
    meter.charge(600).unwrap();
    assert_eq!(rules.bytes_used(), 600, "counted while queued, before any write");
    let refused = meter.charge(500).unwrap_err();
    assert_eq!(refused.to_string(), "egress byte cap of 1000 bytes reached");
    assert_eq!(rules.bytes_used(), 600, "a refused charge takes nothing");
    stream.write_all(&[b'x'; 600]).await.unwrap();
    assert_eq!(rules.bytes_used(), 600, "writing what was charged does not count it again");
    let mut echoed = [0u8; 400];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(rules.bytes_used(), 1000);
}

/// Runs `test` on a thread of its own in a network namespace of its own, with a veth
/// pair whose one end holds `11.22.33.1/24` (public space, reachable from nowhere but this
/// namespace: nothing leaves it). `None` when this user may not make namespaces.
fn in_own_namespace<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which nothing else uses.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let error = std::io::Error::last_os_error();
            // SAFETY: geteuid has no failure modes.
            assert_ne!(unsafe { libc::geteuid() }, 0, "root could not make a network namespace: {error}");
            eprintln!("skipped: cannot make a network namespace: {error}");
            return None;
        }
        // `ip` inherits this thread's namespace.
        for args in [
            "link set lo up",
            "link add cbtest0 type veth peer name cbtest1",
            "addr add 11.22.33.1/24 dev cbtest0",
            "link set cbtest0 up",
            "link set cbtest1 up",
        ] {
            let status = std::process::Command::new("ip").args(args.split(' ')).status().expect("ip");
            assert!(status.success(), "ip {args}");
        }
        Some(test())
    })
    .join()
    .unwrap()
}

#[test]
fn the_hosts_own_addresses_and_attached_networks_are_refused_unless_listed() {
    let tested = in_own_namespace(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("11.22.33.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let _ = socket.write_all(b"hello").await;
                }
            });
            let rules = deno(&NetPolicy::default(), Allowlist::All);
            let refused = rules.connect("11.22.33.1", port).await.unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!(
                    "egress to 11.22.33.1:{port} is refused: address of this host (allow it with net.allowed-private)"
                )
            );
            let neighbour = rules.check_name("11.22.33.7", 443).unwrap_err();
            assert!(neighbour.to_string().contains("address on a network attached to this host"), "{neighbour}");
            // Beyond the subnet, the address is judged as any other (not connected to).
            rules.check_name("11.22.34.1", 443).unwrap();
            assert_eq!(rules.take_refused(), 2);

            let net = NetPolicy { allowed_private: vec!["11.22.33.0/24".into()], ..NetPolicy::default() };
            let listed = deno(&net, Allowlist::All);
            let mut stream = listed.connect("11.22.33.1", port).await.expect("the operator listed the range");
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            listed.check_name("11.22.33.7", 443).unwrap();
        });
    });
    // Outside the namespace, the same address is nobody's own.
    if tested.is_some() {
        deno(&NetPolicy::default(), Allowlist::All).check_name("11.22.33.1", 443).unwrap();
    }
}

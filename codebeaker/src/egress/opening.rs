//! The first bytes a program sends into an egress tunnel, judged before any of them
//! reaches the destination: the policy allowed a *name*, so the name the program gives
//! the destination must be that name (no domain fronting through an allowed host).
//!
//! - A TLS ClientHello: its `server_name` (SNI) must name the tunnel's host. A
//!   ClientHello without SNI is refused when the tunnel's host is a name (every package
//!   manager sends one; without it a shared front end picks the backend some other way),
//!   and allowed to an IP literal.
//! - An HTTP/1 request: its `Host` header (and an absolute-form target) must name the
//!   tunnel's host (and its port, when one is given); a request without `Host` is refused.
//! - Anything else passes: the allowlist already bounds where it goes.
//!
//! Bounded and allocation-light: at most [`MAX_OPENING`] bytes are looked at, and every
//! length in a ClientHello is checked against what is there.

/// The most bytes held back while the opening is judged (a ClientHello or a request head).
pub const MAX_OPENING: usize = 16 * 1024;

/// What the first bytes say, once they say enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judged {
    /// Not enough bytes yet.
    NeedMore,
    /// Nothing to object to.
    Pass,
    /// The program names another host than the tunnel's: what it said, in words.
    Mismatch {
        /// `TLS server name (SNI)` or `HTTP Host header`.
        field: &'static str,
        /// What it named (`None`: nothing).
        named: Option<String>,
    },
    /// The opening could not be read within the bound: why.
    Unreadable(&'static str),
}

/// Which protocol the first bytes started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// A TLS handshake.
    Tls,
    /// An HTTP/1 request.
    Http,
    /// Something else.
    Other,
}

/// Which protocol `bytes` start, `None` when too few arrived to tell.
pub(crate) fn protocol(bytes: &[u8]) -> Option<Protocol> {
    let first = *bytes.first()?;
    if first == 0x16 {
        return Some(Protocol::Tls);
    }
    // An HTTP method: up to 16 upper-case letters, then a space.
    for (at, byte) in bytes.iter().enumerate().take(17) {
        match byte {
            b'A'..=b'Z' => continue,
            b' ' if at > 0 => return Some(Protocol::Http),
            _ => return Some(Protocol::Other),
        }
    }
    if bytes.len() > 16 {
        Some(Protocol::Other)
    } else {
        None
    }
}

/// Judges the opening `bytes` of a tunnel to `host:port` (`host` normalised: lower case,
/// no trailing dot; `literal` when it is an IP address).
pub(crate) fn judge(host: &str, port: u16, literal: bool, bytes: &[u8]) -> Judged {
    match protocol(bytes) {
        None => Judged::NeedMore,
        Some(Protocol::Other) => Judged::Pass,
        Some(Protocol::Tls) => match client_hello_server_name(bytes) {
            Parsed::NeedMore if bytes.len() >= MAX_OPENING => {
                Judged::Unreadable("a TLS ClientHello larger than 16 KiB")
            }
            Parsed::NeedMore => Judged::NeedMore,
            Parsed::Invalid(why) => Judged::Unreadable(why),
            Parsed::Done(None) if literal => Judged::Pass,
            Parsed::Done(name) => match name {
                Some(name) if same_host(&name, host) => Judged::Pass,
                named => Judged::Mismatch { field: "TLS server name (SNI)", named },
            },
        },
        Some(Protocol::Http) => {
            let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if bytes.len() >= MAX_OPENING {
                    Judged::Unreadable("an HTTP request head larger than 16 KiB")
                } else {
                    Judged::NeedMore
                };
            };
            judge_http_head(host, port, &bytes[..end])
        }
    }
}

/// The held bytes of an HTTP opening (whose head [`judge`] passed) rewritten so that its
/// request is the connection's last: `Connection: close` replaces the hop-by-hop
/// connection headers, so the destination processes no later request on the same
/// connection (which would go unjudged and could name another host).
pub(crate) fn only_request(bytes: &[u8]) -> Vec<u8> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return bytes.to_vec() };
    let Ok(head) = std::str::from_utf8(&bytes[..end]) else { return bytes.to_vec() };
    let mut rewritten = String::with_capacity(end + 23);
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut rewritten = rewritten.into_bytes();
    rewritten.extend_from_slice(&bytes[end + 4..]);
    rewritten
}

fn judge_http_head(host: &str, port: u16, head: &[u8]) -> Judged {
    let Ok(head) = std::str::from_utf8(head) else {
        return Judged::Unreadable("an HTTP request head that is not UTF-8");
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let mismatch = |named: &str| Judged::Mismatch { field: "HTTP Host header", named: Some(named.to_owned()) };
    // A target naming a host (absolute form, or CONNECT's authority) takes precedence
    // over `Host` at the destination: it must match too.
    let authority = if method == "CONNECT" {
        Some(target)
    } else {
        let lower = target.to_ascii_lowercase();
        ["http://", "https://"]
            .iter()
            .find_map(|scheme| lower.starts_with(scheme).then(|| &target[scheme.len()..]))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
    };
    if let Some(authority) = authority {
        if !authority_matches(authority, host, port) {
            return mismatch(authority);
        }
    }
    let mut hosts = lines.filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim())
    });
    match (hosts.next(), hosts.next()) {
        (Some(value), None) if authority_matches(value, host, port) => Judged::Pass,
        (Some(value), None) => mismatch(value),
        (Some(_), Some(_)) => Judged::Mismatch { field: "HTTP Host header", named: Some("several hosts".to_owned()) },
        (None, _) => Judged::Mismatch { field: "HTTP Host header", named: None },
    }
}

/// Whether `authority` (`host`, `host:port`, `[v6]:port`) names `host` and, if it gives a
/// port, `port`.
fn authority_matches(authority: &str, host: &str, port: u16) -> bool {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
    let (name, given_port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':')),
            None => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') => (name, Some(port)),
            _ => (authority, None),
        }
    };
    let port_ok = given_port.is_none_or(|given| given.parse::<u16>().is_ok_and(|given| given == port));
    port_ok && same_host(name, host)
}

/// Host names compared as DNS does: case-insensitive, a trailing dot ignored.
fn same_host(named: &str, host: &str) -> bool {
    let named = named.strip_suffix('.').unwrap_or(named);
    let host = host.strip_suffix('.').unwrap_or(host);
    !named.is_empty() && named.eq_ignore_ascii_case(host)
}

/// What reading a ClientHello gave.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    NeedMore,
    Invalid(&'static str),
    /// The host name in `server_name`, if there is one.
    Done(Option<String>),
}

/// A cursor over bytes that refuses to read past their end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A block prefixed by a length of `width` bytes.
    fn block(&mut self, width: usize) -> Option<Reader<'a>> {
        let len = match width {
            1 => self.u8()?,
            _ => self.u16()?,
        };
        self.take(len).map(|bytes| Reader { bytes })
    }
}

/// The handshake bytes of the TLS records at the start of `bytes` (a ClientHello may
/// span records), `Err` when a record is not a handshake record.
fn handshake_bytes(mut bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut handshake = Vec::new();
    while bytes.len() >= 5 {
        if bytes[0] != 0x16 || bytes[1] != 0x03 {
            // A record of another type after the first (early data) ends the handshake's.
            return if handshake.is_empty() { Err("bytes that are not a TLS handshake") } else { Ok(handshake) };
        }
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        if len == 0 || len > 16 * 1024 + 2048 {
            return Err("a TLS record of an invalid length");
        }
        let available = (bytes.len() - 5).min(len);
        handshake.extend_from_slice(&bytes[5..5 + available]);
        if available < len {
            break;
        }
        bytes = &bytes[5 + len..];
    }
    Ok(handshake)
}

fn client_hello_server_name(bytes: &[u8]) -> Parsed {
    let handshake = match handshake_bytes(bytes) {
        Ok(handshake) => handshake,
        Err(why) => return Parsed::Invalid(why),
    };
    if handshake.len() < 4 {
        return Parsed::NeedMore;
    }
    if handshake[0] != 1 {
        return Parsed::Invalid("a TLS handshake that does not start with a ClientHello");
    }
    let len = usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]);
    if len > MAX_OPENING {
        return Parsed::Invalid("a TLS ClientHello larger than 16 KiB");
    }
    if handshake.len() < 4 + len {
        return Parsed::NeedMore;
    }
    match server_name(Reader { bytes: &handshake[4..4 + len] }) {
        Some(name) => Parsed::Done(name),
        None => Parsed::Invalid("a malformed TLS ClientHello"),
    }
}

/// The `host_name` of the `server_name` extension of a ClientHello body; `None` when
/// the body is malformed, `Some(None)` when it has no such name.
fn server_name(mut hello: Reader<'_>) -> Option<Option<String>> {
    hello.take(2 + 32)?; // legacy_version, random
    hello.block(1)?; // legacy_session_id
    hello.block(2)?; // cipher_suites
    hello.block(1)?; // legacy_compression_methods
    if hello.bytes.is_empty() {
        return Some(None); // no extensions at all
    }
    let mut extensions = hello.block(2)?;
    let mut found = None;
    while !extensions.bytes.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.block(2)?;
        if kind != 0 {
            continue;
        }
        if found.is_some() {
            return None; // two server_name extensions
        }
        let mut names = data.block(2)?;
        let mut name = None;
        while !names.bytes.is_empty() {
            let name_type = names.u8()?;
            let value = names.block(2)?;
            if name_type == 0 {
                if name.is_some() {
                    return None; // RFC 6066: at most one host_name
                }
                name = Some(String::from_utf8(value.bytes.to_vec()).ok()?);
            }
        }
        found = Some(name);
    }
    Some(found.flatten())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal ClientHello record naming `sni` (none when `None`).
    pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut extensions = Vec::new();
        // supported_versions, to look like a real one.
        extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        if let Some(sni) = sni {
            let name = sni.as_bytes();
            let list_len = 3 + name.len();
            extensions.extend_from_slice(&[0x00, 0x00]);
            extensions.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
            extensions.extend_from_slice(&(list_len as u16).to_be_bytes());
            extensions.push(0);
            extensions.extend_from_slice(&(name.len() as u16).to_be_bytes());
            extensions.extend_from_slice(name);
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![0x01];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn a_client_hello_is_judged_by_its_server_name() {
        let hello = client_hello(Some("PyPI.org."));
        assert_eq!(judge("pypi.org", 443, false, &hello), Judged::Pass);
        let mismatch = Judged::Mismatch { field: "TLS server name (SNI)", named: Some("evil.example".into()) };
        assert_eq!(judge("pypi.org", 443, false, &client_hello(Some("evil.example"))), mismatch);
        let none = Judged::Mismatch { field: "TLS server name (SNI)", named: None };
        assert_eq!(judge("pypi.org", 443, false, &client_hello(None)), none);
        assert_eq!(judge("203.0.113.9", 443, true, &client_hello(None)), Judged::Pass);
        // Every prefix is "not yet": nothing passes before the name was read.
        for cut in 0..hello.len() {
            assert_eq!(judge("pypi.org", 443, false, &hello[..cut]), Judged::NeedMore, "cut at {cut}");
        }
    }

    #[test]
    fn a_client_hello_split_over_records_is_read_whole() {
        let hello = client_hello(Some("evil.example"));
        let (header, handshake) = hello.split_at(5);
        let (first, second) = handshake.split_at(20);
        let mut split = Vec::new();
        for part in [first, second] {
            split.extend_from_slice(&[header[0], header[1], header[2]]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert!(matches!(judge("pypi.org", 443, false, &split), Judged::Mismatch { .. }));
    }

    #[test]
    fn an_http_request_is_judged_by_its_host() {
        let judge_head = |head: &str| judge("pypi.org", 80, false, head.as_bytes());
        assert_eq!(judge_head("GET / HTTP/1.1\r\nHost: PYPI.org\r\n\r\n"), Judged::Pass);
        assert_eq!(judge_head("GET / HTTP/1.1\r\nhost: pypi.org:80\r\n\r\n"), Judged::Pass);
        assert_eq!(judge_head("GET / HTTP/1.1\r\nHost: pypi.org"), Judged::NeedMore);
        for (head, named) in [
            ("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", Some("evil.example")),
            ("GET / HTTP/1.1\r\nHost: pypi.org:8080\r\n\r\n", Some("pypi.org:8080")),
            ("GET http://evil.example/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n", Some("evil.example")),
            ("CONNECT evil.example:443 HTTP/1.1\r\nHost: pypi.org\r\n\r\n", Some("evil.example:443")),
            ("GET / HTTP/1.1\r\nHost: pypi.org\r\nHost: evil.example\r\n\r\n", Some("several hosts")),
            ("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", None),
        ] {
            let expected = Judged::Mismatch { field: "HTTP Host header", named: named.map(str::to_owned) };
            assert_eq!(judge_head(head), expected, "{head:?}");
        }
        assert_eq!(judge("::1", 80, true, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), Judged::Pass);
    }

    #[test]
    fn an_http_opening_is_made_the_connection_s_only_request() {
        let opening = b"GET /a HTTP/1.1\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nHost: pypi.org\r\n\r\nGET /b HTTP/1.1\r\nHost: evil.example\r\n\r\n";
        let rewritten = only_request(opening);
        assert_eq!(
            String::from_utf8(rewritten).unwrap(),
            "GET /a HTTP/1.1\r\nHost: pypi.org\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: evil.example\r\n\r\n"
        );
    }

    #[test]
    fn other_protocols_pass_and_oversized_openings_are_refused() {
        assert_eq!(judge("db.example", 5432, false, b"\0\0\0\x08\x04\xd2\x16\x2f"), Judged::Pass);
        assert_eq!(judge("pypi.org", 80, false, b"GE"), Judged::NeedMore);
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_OPENING));
        assert!(matches!(judge("pypi.org", 80, false, huge.as_bytes()), Judged::Unreadable(_)));
        let mut lying = client_hello(Some("pypi.org"));
        lying[6..9].copy_from_slice(&[0x00, 0xff, 0xff]); // handshake length 65535
        assert!(matches!(judge("pypi.org", 443, false, &lying), Judged::Unreadable(_)));
    }

    proptest! {
        #[test]
        fn arbitrary_openings_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = judge("pypi.org", 443, false, &bytes);
            let mut tls = vec![0x16, 0x03, 0x01];
            tls.extend_from_slice(&bytes);
            let _ = judge("pypi.org", 443, false, &tls);
        }

        #[test]
        fn corrupted_client_hellos_never_panic(at in 0usize..80, value in any::<u8>()) {
            let mut hello = client_hello(Some("pypi.org"));
            let at = at % hello.len();
            hello[at] = value;
            let _ = judge("pypi.org", 443, false, &hello);
        }
    }
}

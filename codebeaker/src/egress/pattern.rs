//! Host names as egress sees them: [`HostPattern`]s from the policy and `allowNet`, and
//! the normalisation of the host a program asks for.

use std::fmt;
use std::net::IpAddr;

/// Longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;

/// A host a program asked for, normalised: lowercase, no trailing dot, IPv6 without
/// brackets, IP literals in their canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    /// The normalised name or literal.
    pub(crate) name: String,
    /// The address, when the host is an IP literal.
    pub(crate) literal: Option<IpAddr>,
}

impl Host {
    /// Normalises `raw`, or says why it is not a host name.
    pub(crate) fn parse(raw: &str) -> Result<Host, &'static str> {
        let trimmed = raw.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(raw);
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(Host { name: ip.to_string(), literal: Some(ip) });
        }
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_HOST_LEN {
            return Err("empty or longer than 253 bytes");
        }
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !labels_ok {
            return Err("not a valid host name");
        }
        // The resolver reads `2130706433`, `127.1` or `0x7f.1` as IPv4 addresses; no real
        // top-level domain starts with a digit, so such names are refused outright.
        let last = name.rsplit('.').next().unwrap_or_default();
        if last.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("a numeric name that is not a plain IP address");
        }
        Ok(Host { name, literal: None })
    }
}

/// Which hosts a pattern names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Names {
    /// `*`: every host.
    Any,
    /// `example.org`, `10.0.0.1`, `::1`.
    Exact(String),
    /// `*.example.org`: every name below `example.org` (not `example.org` itself); stored
    /// as `.example.org`.
    Below(String),
}

/// One allowed destination: `example.org`, `*.example.org`, `*`, an IP literal
/// (`[::1]` for IPv6 with a port), each with an optional `:PORT`. Without a port every
/// port matches (as in Deno's `--allow-net`). Case and a trailing dot do not matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    names: Names,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses a pattern, naming what is wrong.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let invalid = |why: &str| format!("{text:?} is not a host pattern: {why}");
        let (host, port) = split_port(text.trim()).map_err(invalid)?;
        let names = if host == "*" {
            Names::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            let parsed = Host::parse(suffix).map_err(invalid)?;
            if parsed.literal.is_some() {
                return Err(invalid("a wildcard cannot precede an IP address"));
            }
            Names::Below(format!(".{}", parsed.name))
        } else {
            Names::Exact(Host::parse(host).map_err(invalid)?.name)
        };
        Ok(HostPattern { names, port })
    }

    /// `host` on `port`, both only with the given ports.
    pub(crate) fn for_ports(host: &str, ports: &[u16]) -> Vec<HostPattern> {
        ports.iter().map(|port| HostPattern { names: Names::Exact(host.to_owned()), port: Some(*port) }).collect()
    }

    /// Whether the (normalised) `host` on `port` matches.
    pub(crate) fn matches(&self, host: &Host, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.names {
            Names::Any => true,
            Names::Exact(name) => *name == host.name,
            Names::Below(suffix) => host.literal.is_none() && host.name.ends_with(suffix.as_str()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.names {
            Names::Any => "*".to_owned(),
            Names::Exact(name) if name.contains(':') => format!("[{name}]"),
            Names::Exact(name) => name.clone(),
            Names::Below(suffix) => format!("*{suffix}"),
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

/// Splits `host[:port]`, `[v6][:port]` or a bare IPv6 literal.
fn split_port(text: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '['")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("junk after ']'")?)),
        }
    } else if text.matches(':').count() == 1 {
        let (host, port) = text.split_once(':').unwrap_or((text, ""));
        (host, Some(port))
    } else {
        (text, None)
    };
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p != 0).ok_or("the port must be 1 to 65535")?),
    };
    if host.is_empty() {
        return Err("no host");
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    fn allows(pattern: &str, name: &str, port: u16) -> bool {
        HostPattern::parse(pattern).unwrap().matches(&host(name), port)
    }

    #[test]
    fn patterns_match_names_suffixes_and_ports() {
        assert!(allows("pypi.org", "PyPI.org.", 443));
        assert!(allows("pypi.org", "pypi.org", 8443), "no port: every port");
        assert!(allows("pypi.org:443", "pypi.org", 443));
        assert!(!allows("pypi.org:443", "pypi.org", 80));
        assert!(!allows("pypi.org", "evilpypi.org", 443));
        assert!(!allows("pypi.org", "pypi.org.evil.com", 443));
        assert!(allows("*.pythonhosted.org", "files.pythonhosted.org", 443));
        assert!(allows("*.pythonhosted.org", "a.b.pythonhosted.org", 443));
        assert!(!allows("*.pythonhosted.org", "pythonhosted.org", 443));
        assert!(!allows("*.pythonhosted.org", "evilpythonhosted.org", 443));
        assert!(allows("*", "anything.example", 1));
        assert!(allows("127.0.0.1:8080", "127.0.0.1", 8080));
        assert!(allows("[::1]:8080", "[0:0::1]", 8080));
        assert!(allows("::1", "::1", 1234));
        assert_eq!(HostPattern::parse("*.Example.ORG.:443").unwrap().to_string(), "*.example.org:443");
        assert_eq!(host("0:0::1").name, "::1");
    }

    #[test]
    fn bad_patterns_and_hosts_are_refused() {
        for bad in ["", ":443", "example.org:0", "example.org:99999", "ex ample.org", "*.", "[::1", "*.10.0.0.1"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "a..b", "2130706433", "127.1", "0x7f.1", "exa mple.org", "a/b", &"a".repeat(300)] {
            assert!(Host::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(host("[::FFFF:127.0.0.1]").literal, Some("::ffff:127.0.0.1".parse().unwrap()));
    }
}

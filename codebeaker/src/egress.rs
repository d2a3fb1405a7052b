//! Egress policy: where sandboxed code may connect, decided by one piece of code for
//! every backend (Deno's `fetch` with `allowNet`, the Docker sessions' egress proxy).
//!
//! [`EgressRules::for_session`] builds a session's rules from the operator's
//! [`NetPolicy`] (a backend has it as [`SessionLimits::net`](crate::SessionLimits::net))
//! and the session's language and `allowNet`; build it once per session and share it by
//! cloning, since the caps count across all of a session's connections. Every connection then goes
//! through three gates, in this order:
//!
//! 1. **The name** ([`EgressRules::check_name`]): egress must be on, and the host and
//!    port must match the allowlist. Refused here, nothing is looked up.
//! 2. **The addresses** ([`EgressRules::resolve`]): the name is resolved and *every*
//!    address must be public and not the host's own, or inside the operator's
//!    `net.allowed-private`; a name with one loopback, private, link-local, metadata,
//!    documentation (…) address, or one address of the host or of a network attached to
//!    it (read from its interfaces), is refused whole. IP literals are judged the same
//!    way, without DNS.
//! 3. **The connection** ([`EgressRules::connect`]): a connection is opened to an
//!    address vetted in step 2 (never resolved again, so DNS rebinding cannot swap it),
//!    under the session's caps on concurrent connections and on bytes moved.
//!
//! Which hosts are allowed:
//! - Docker languages: `net.allowed-hosts`, or when it is empty the public package
//!   registries of the language ([`default_registries`]: registry hosts only, no
//!   general-purpose storage or CDN names), on ports 443 and 80 only.
//! - Deno: the session's `allowNet` (`true`: any public host); when the operator set
//!   `net.allowed-hosts`, a host must match it too.
//!
//! ```
//! use codebeaker::egress::EgressRules;
//! use codebeaker::{Language, NetPolicy};
//!
//! let rules = EgressRules::for_session(&NetPolicy::default(), Language::Python, None);
//! assert!(rules.check_name("pypi.org", 443).is_ok());
//! let refused = rules.check_name("example.org", 443).unwrap_err();
//! assert_eq!(refused.to_string(), "egress to example.org:443 is not allowed by policy");
//! let refused = rules.check_name("169.254.169.254", 80).unwrap_err();
//! assert!(refused.to_string().contains("not allowed by policy"));
//! ```

mod address;
mod local;
mod opening;
mod pattern;
mod stream;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::Allowlist;
use crate::language::Language;
use crate::policy::NetPolicy;

pub use self::address::{classify, AddressClass, Cidr};
pub use self::local::refresh as read_host_networks;
pub use self::opening::MAX_OPENING;
use self::opening::{Judged, Protocol};
use self::pattern::Host;
pub use self::pattern::HostPattern;
use self::stream::Budget;
pub use self::stream::{EgressMeter, EgressStream};

/// How long a DNS lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The ports the default package-registry allowlist opens.
const REGISTRY_PORTS: [u16; 2] = [443, 80];

/// The public package registries a Docker session of `language` may reach when the
/// operator set no `net.allowed-hosts` (ports 443 and 80): the registries' own hosts
/// only. A general-purpose host (object storage, a CDN serving anyone's files) would be
/// a way out for data, so none is listed: Go's module proxy serves module zips itself
/// (`GOPROXY=https://proxy.golang.org`), and an operator who needs more names them in
/// `net.allowed-hosts`.
pub fn default_registries(language: Language) -> &'static [&'static str] {
    match language {
        Language::Python => &["pypi.org", "files.pythonhosted.org"],
        Language::JavaScript | Language::TypeScript => &["registry.npmjs.org"],
        Language::Go => &["proxy.golang.org", "sum.golang.org"],
        Language::CSharp => &["api.nuget.org"],
    }
}

/// Why a connection was refused or could not be made. Refusals by policy
/// ([`EgressDenied::is_policy`]) name the host, the port and the rule; the others are
/// network failures of an allowed destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressDenied {
    /// The operator turned egress off.
    #[error("egress to {host}:{port} is refused: egress is off for this session (operator policy)")]
    Off {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
    },
    /// The host or port is not on the allowlist.
    #[error("egress to {host}:{port} is not allowed by policy")]
    NotAllowed {
        /// The host asked for (normalised).
        host: String,
        /// The port asked for.
        port: u16,
    },
    /// The host is, or resolves to, an address that is not public.
    #[error("egress to {host}:{port} is refused: {} (allow it with net.allowed-private)", describe(host, address, *class))]
    Address {
        /// The host asked for (normalised).
        host: String,
        /// The port asked for.
        port: u16,
        /// The refused address.
        address: IpAddr,
        /// What kind of address it is.
        class: AddressClass,
    },
    /// The program names another host to the destination than the one the tunnel was
    /// allowed for (TLS SNI, HTTP `Host`): domain fronting.
    #[error("egress to {host}:{port} is refused: {detail}")]
    Fronting {
        /// The tunnel's host.
        host: String,
        /// The tunnel's port.
        port: u16,
        /// What the program named instead, in words.
        detail: String,
    },
    /// The host's own addresses could not be read, so no address can be judged.
    #[error("egress to {host}:{port} is refused: {reason}")]
    HostUnknown {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// Why the host's addresses are unknown.
        reason: String,
    },
    /// The host is not a valid host name.
    #[error("egress to {host:?} is refused: {reason}")]
    InvalidHost {
        /// The host asked for, as given.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The session has `net.max-connections` connections open already.
    #[error(
        "egress to {host}:{port} is refused: the session already has {limit} connections open (net.max-connections)"
    )]
    ConnectionCap {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// The cap.
        limit: usize,
    },
    /// The session moved `net.max-bytes` bytes already.
    #[error("egress to {host}:{port} is refused: egress byte cap of {limit} bytes reached (net.max-bytes)")]
    ByteCap {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// The cap.
        limit: u64,
    },
    /// The name could not be resolved.
    #[error("egress to {host}:{port} failed: cannot resolve {host}: {source}")]
    Lookup {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// No vetted address accepted the connection.
    #[error("egress to {host}:{port} failed: {source}")]
    Connect {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// The last connection error.
        #[source]
        source: io::Error,
    },
}

impl EgressDenied {
    /// Whether the policy refused the destination (a proxy answers 403), as opposed to a
    /// network failure of an allowed one (502).
    pub fn is_policy(&self) -> bool {
        !matches!(self, EgressDenied::Lookup { .. } | EgressDenied::Connect { .. })
    }
}

fn describe(host: &str, address: &IpAddr, class: AddressClass) -> String {
    if *host == address.to_string() {
        class.label().to_owned()
    } else {
        format!("{host} resolves to {address}, a {}", class.label())
    }
}

/// What the first bytes a program sent into a tunnel say (see
/// [`EgressRules::check_opening`]).
#[derive(Debug)]
pub enum Opening {
    /// Not enough bytes yet to judge: hold them and ask again with more (at most
    /// [`MAX_OPENING`] bytes are ever needed).
    NeedMore,
    /// Forward them.
    Pass,
    /// Forward these bytes instead of the ones held: an HTTP request made the
    /// connection's only one (`Connection: close`), so that no later request on it, which
    /// nobody judges, reaches the destination.
    Rewritten(Vec<u8>),
    /// Refused: send `answer` to the program (an HTTP 403 with the message, or a TLS
    /// `access_denied` alert), forward nothing and close the tunnel.
    Refused {
        /// Why.
        denied: EgressDenied,
        /// What the program is answered.
        answer: Vec<u8>,
    },
}

/// One session's egress rules and the counters its connections share. Cheap to clone;
/// clones share the counters, so hand the same rules to every connection of a session.
#[derive(Debug, Clone)]
pub struct EgressRules {
    inner: Arc<Rules>,
}

#[derive(Debug)]
struct Rules {
    enabled: bool,
    /// The session's own allowlist (`allowNet`); `None`: any host.
    session: Option<Vec<HostPattern>>,
    /// The operator's allowlist; `None`: any host.
    operator: Option<Vec<HostPattern>>,
    allowed_private: Vec<Cidr>,
    budget: Arc<Budget>,
    /// Policy refusals since the last [`EgressRules::take_refused`].
    refused: AtomicU64,
}

impl EgressRules {
    /// The rules of one session of `language` under the operator's `net` policy.
    /// `session_hosts` is what the session itself was granted when its backend lets
    /// sessions choose (Deno's `allowNet`), bounded by the operator's `allowed-hosts`;
    /// `None`: the operator's `allowed-hosts`, else the language's
    /// [`default_registries`]. Entries of `net` that do not parse are left out
    /// (refusing more, never less); [`crate::Policy::validate`] reports them.
    pub fn for_session(net: &NetPolicy, language: Language, session_hosts: Option<&Allowlist>) -> EgressRules {
        let patterns = |texts: &[String]| -> Vec<HostPattern> {
            texts
                .iter()
                .filter_map(|text| {
                    HostPattern::parse(text)
                        .map_err(|error| tracing::warn!(%error, "egress: ignoring a host pattern"))
                        .ok()
                })
                .collect()
        };
        let operator_hosts = (!net.allowed_hosts.is_empty()).then(|| patterns(&net.allowed_hosts));
        let (session, operator) = if let Some(allow_net) = session_hosts {
            let session = match allow_net {
                Allowlist::None => Some(Vec::new()),
                Allowlist::All => None,
                Allowlist::Only(names) => Some(patterns(names)),
            };
            (session, operator_hosts)
        } else {
            let registries = || {
                default_registries(language)
                    .iter()
                    .flat_map(|host| HostPattern::for_ports(host, &REGISTRY_PORTS))
                    .collect()
            };
            (None, Some(operator_hosts.unwrap_or_else(registries)))
        };
        let allowed_private = net
            .allowed_private
            .iter()
            .filter_map(|text| {
                Cidr::parse(text)
                    .map_err(|error| tracing::warn!(%error, "egress: ignoring an allowed-private entry"))
                    .ok()
            })
            .collect();
        EgressRules {
            inner: Arc::new(Rules {
                enabled: net.egress,
                session,
                operator,
                allowed_private,
                budget: Arc::new(Budget::new(net.max_connections, net.max_bytes)),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Whether egress is on at all for this session.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.budget.open()
    }

    /// Bytes moved so far (both directions, every connection).
    pub fn bytes_used(&self) -> u64 {
        self.inner.budget.used()
    }

    /// Checks the destination by name alone, before any lookup: egress on, host and
    /// port on the allowlist, and for an IP literal, a permitted address.
    pub fn check_name(&self, host: &str, port: u16) -> Result<(), EgressDenied> {
        self.recorded(self.vet_name(host, port).map(drop))
    }

    /// Counts one refusal the caller made under these rules itself (a permission or a cap
    /// of its own), beside the ones these checks count.
    pub fn record_refusal(&self) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// How many destinations the policy refused since the last call (network failures of
    /// allowed destinations do not count): a sandbox reports them with each command
    /// (`usage.egressRefused`), and the server counts them in its metrics and audit log.
    pub fn take_refused(&self) -> u64 {
        self.inner.refused.swap(0, Ordering::Relaxed)
    }

    fn recorded<T>(&self, result: Result<T, EgressDenied>) -> Result<T, EgressDenied> {
        if result.as_ref().is_err_and(EgressDenied::is_policy) {
            self.record_refusal();
        }
        result
    }

    fn vet_name(&self, raw: &str, port: u16) -> Result<Host, EgressDenied> {
        let rules = &self.inner;
        if !rules.enabled {
            return Err(EgressDenied::Off { host: raw.to_owned(), port });
        }
        let host = Host::parse(raw).map_err(|reason| EgressDenied::InvalidHost { host: raw.to_owned(), reason })?;
        let allowed_by = |list: &Option<Vec<HostPattern>>| {
            list.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(&host, port)))
        };
        if port == 0 || !allowed_by(&rules.session) || !allowed_by(&rules.operator) {
            return Err(EgressDenied::NotAllowed { host: host.name, port });
        }
        if let Some(address) = host.literal {
            self.vet_address(&host.name, port, address)?;
        }
        Ok(host)
    }

    fn vet_address(&self, host: &str, port: u16, address: IpAddr) -> Result<(), EgressDenied> {
        if self.inner.allowed_private.iter().any(|cidr| cidr.contains(address)) {
            return Ok(());
        }
        let refused = |class| EgressDenied::Address { host: host.to_owned(), port, address, class };
        if let Some(class) = classify(address) {
            return Err(refused(class));
        }
        let networks =
            local::current().map_err(|reason| EgressDenied::HostUnknown { host: host.to_owned(), port, reason })?;
        if networks.is_own(address) {
            return Err(refused(AddressClass::HostAddress));
        }
        if networks.is_attached(address) {
            return Err(refused(AddressClass::HostNetwork));
        }
        Ok(())
    }

    /// Judges the first bytes a program sent into a tunnel to `host:port` (which the
    /// rules allowed) before any of them reaches the destination: a TLS ClientHello must
    /// name `host` in its SNI (a ClientHello without SNI passes only to an IP literal),
    /// an HTTP request must name it in `Host` (and in an absolute-form target) and is made
    /// the connection's only request; other protocols pass. A refusal counts as a policy
    /// refusal.
    pub fn check_opening(&self, host: &str, port: u16, bytes: &[u8]) -> Opening {
        let (name, literal) = match Host::parse(host) {
            Ok(parsed) => (parsed.name, parsed.literal.is_some()),
            Err(_) => (host.to_owned(), false),
        };
        let detail = match opening::judge(&name, port, literal, bytes) {
            Judged::NeedMore => return Opening::NeedMore,
            Judged::Pass if opening::protocol(bytes) == Some(Protocol::Http) => {
                return Opening::Rewritten(opening::only_request(bytes))
            }
            Judged::Pass => return Opening::Pass,
            Judged::Mismatch { field, named: Some(named) } => format!("the {field} names {named:?}, not {name}"),
            Judged::Mismatch { field, named: None } => format!("the {field} names no host (it must name {name})"),
            Judged::Unreadable(what) => format!("the connection opened with {what}"),
        };
        let denied = EgressDenied::Fronting { host: name, port, detail };
        self.record_refusal();
        let answer = match opening::protocol(bytes) {
            Some(Protocol::Http) => {
                let body = format!("{denied}\n");
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            // A fatal `access_denied` alert: the TLS client reports it as such.
            Some(Protocol::Tls) => vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31],
            _ => Vec::new(),
        };
        Opening::Refused { denied, answer }
    }

    /// Checks the name, resolves it, and checks every address; the addresses returned
    /// are the only ones a connection may use.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressDenied> {
        let resolved = match self.vet_name(host, port) {
            Ok(host) => self.resolve_vetted(&host, port).await,
            Err(denied) => Err(denied),
        };
        self.recorded(resolved)
    }

    async fn resolve_vetted(&self, host: &Host, port: u16) -> Result<Vec<SocketAddr>, EgressDenied> {
        if let Some(address) = host.literal {
            return Ok(vec![SocketAddr::new(address, port)]);
        }
        let lookup_failed = |source| EgressDenied::Lookup { host: host.name.clone(), port, source };
        let addresses: Vec<SocketAddr> =
            match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host.name.as_str(), port))).await {
                Ok(Ok(addresses)) => addresses.collect(),
                Ok(Err(error)) => return Err(lookup_failed(error)),
                Err(_) => {
                    let message = format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs());
                    return Err(lookup_failed(io::Error::new(io::ErrorKind::TimedOut, message)));
                }
            };
        if addresses.is_empty() {
            return Err(lookup_failed(io::Error::new(io::ErrorKind::NotFound, "no address")));
        }
        for address in &addresses {
            self.vet_address(&host.name, port, address.ip())?;
        }
        Ok(addresses)
    }

    /// Opens a connection to `host:port` if the rules allow it: checks the name, takes a
    /// place under `net.max-connections`, resolves and vets the addresses, and connects
    /// to the first vetted address that answers (never resolving again).
    pub async fn connect(&self, host: &str, port: u16) -> Result<EgressStream, EgressDenied> {
        let connected = self.open(host, port).await;
        self.recorded(connected)
    }

    async fn open(&self, host: &str, port: u16) -> Result<EgressStream, EgressDenied> {
        let vetted = self.vet_name(host, port)?;
        let budget = &self.inner.budget;
        if budget.used() >= budget.max_bytes {
            return Err(EgressDenied::ByteCap { host: vetted.name, port, limit: budget.max_bytes });
        }
        let slot = budget.take_slot().ok_or_else(|| EgressDenied::ConnectionCap {
            host: vetted.name.clone(),
            port,
            limit: budget.max_connections,
        })?;
        let addresses = self.resolve_vetted(&vetted, port).await?;
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
        for address in addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => return Ok(EgressStream::new(stream, address, slot)),
                Ok(Err(error)) => last_error = error,
                Err(_) => {
                    let message = format!("connecting to {address} timed out after {} s", CONNECT_TIMEOUT.as_secs());
                    last_error = io::Error::new(io::ErrorKind::TimedOut, message);
                }
            }
        }
        Err(EgressDenied::Connect { host: vetted.name, port, source: last_error })
    }
}

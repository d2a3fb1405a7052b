//! The host's own addresses and the networks directly attached to it: egress never
//! reaches them unless the operator lists them in `net.allowed-private` (a public address
//! of the host is as much the host as its loopback, and its neighbours on the same subnet
//! are its own network, whatever their class).
//!
//! Read with `getifaddrs(3)` and kept for [`REFRESH`]; a refresh that fails keeps the
//! last good list (a sandboxed worker that may no longer open netlink sockets keeps the
//! list it read before its walls went up: see [`refresh`]). Per network namespace: a
//! thread that moved to another namespace sees that namespace's interfaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::address::Cidr;

/// How long a read of the interfaces is used before it is read again.
const REFRESH: Duration = Duration::from_secs(5);

/// What the host's interfaces say: each address and the subnet it is on.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostNetworks {
    addresses: Vec<IpAddr>,
    subnets: Vec<Cidr>,
}

impl HostNetworks {
    /// Whether `ip` is one of the host's own addresses.
    pub(crate) fn is_own(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.addresses.contains(&ip)
    }

    /// Whether `ip` is on a network directly attached to the host.
    pub(crate) fn is_attached(&self, ip: IpAddr) -> bool {
        self.subnets.iter().any(|subnet| subnet.contains(ip))
    }
}

struct Snapshot {
    namespace: Option<u64>,
    read_at: Instant,
    networks: Arc<HostNetworks>,
}

static CACHE: Mutex<Option<Snapshot>> = Mutex::new(None);

/// The network namespace of the calling thread (its inode), when `/proc` tells.
fn namespace() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net").ok().map(|meta| meta.ino())
}

/// The host's addresses and attached networks, read again when older than [`REFRESH`]
/// or read in another network namespace. `Err` only when they were never read and cannot
/// be: the caller then refuses (the host cannot tell what is its own).
pub(crate) fn current() -> Result<Arc<HostNetworks>, String> {
    let namespace = namespace();
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(snapshot) = cache.as_ref() {
        // Unknown namespace (no /proc): the list read before is the best we have.
        let same_namespace = namespace.is_none() || snapshot.namespace == namespace;
        if same_namespace && snapshot.read_at.elapsed() < REFRESH {
            return Ok(snapshot.networks.clone());
        }
    }
    match read() {
        Ok(networks) => {
            let networks = Arc::new(networks);
            *cache = Some(Snapshot { namespace, read_at: Instant::now(), networks: networks.clone() });
            Ok(networks)
        }
        Err(error) => match cache.as_ref() {
            Some(snapshot) if namespace.is_none() || snapshot.namespace == namespace => {
                tracing::debug!(%error, "egress: keeping the last list of the host's addresses");
                Ok(snapshot.networks.clone())
            }
            _ => Err(format!("cannot list the host's network interfaces: {error}")),
        },
    }
}

/// Reads the host's interfaces now, so that a process about to lose the right to
/// (a sandboxed worker under seccomp) keeps a list to judge egress by.
pub fn refresh() -> std::io::Result<()> {
    let networks = Arc::new(read()?);
    let snapshot = Snapshot { namespace: namespace(), read_at: Instant::now(), networks };
    *CACHE.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    Ok(())
}

fn read() -> std::io::Result<HostNetworks> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocated into `list`; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut networks = HostNetworks::default();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        // SAFETY: the address and netmask pointers are null or point to sockaddrs of
        // the family they name, owned by the list.
        let (address, netmask) = unsafe { (socket_address(ifa.ifa_addr), socket_address(ifa.ifa_netmask)) };
        if let Some(address) = address {
            networks.addresses.push(address);
            let prefix = netmask.map_or(if address.is_ipv4() { 32 } else { 128 }, prefix_of);
            networks.subnets.push(Cidr::new(address, prefix));
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: the list came from getifaddrs and nothing refers to it any more.
    unsafe { libc::freeifaddrs(list) };
    Ok(networks)
}

/// The IP address in a `sockaddr`, if it holds one.
///
/// # Safety
/// `address` is null or points to a valid `sockaddr` of the size its family implies.
unsafe fn socket_address(address: *const libc::sockaddr) -> Option<IpAddr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: the caller promises a valid sockaddr; the family says which struct it is.
    unsafe {
        match i32::from((*address).sa_family) {
            libc::AF_INET => {
                let v4 = &*(address as *const libc::sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let v6 = &*(address as *const libc::sockaddr_in6);
                Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

/// The prefix length of a netmask (its leading one bits).
fn prefix_of(netmask: IpAddr) -> u8 {
    match netmask {
        IpAddr::V4(mask) => u32::from(mask).leading_ones() as u8,
        IpAddr::V6(mask) => u128::from(mask).leading_ones() as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_s_own_loopback_and_interfaces_are_listed() {
        let networks = current().unwrap();
        assert!(networks.is_own("127.0.0.1".parse().unwrap()), "{networks:?}");
        assert!(networks.is_attached("127.0.0.53".parse().unwrap()), "lo is 127.0.0.0/8: {networks:?}");
        assert!(!networks.is_own("1.1.1.1".parse().unwrap()));
    }

    #[test]
    fn netmasks_become_prefix_lengths() {
        assert_eq!(prefix_of("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_of("255.255.240.0".parse().unwrap()), 20);
        assert_eq!(prefix_of("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
        assert_eq!(prefix_of("0.0.0.0".parse().unwrap()), 0);
    }
}

//! Who may connect: access rules by network ([`Cidr`], [`AccessRule`]) and the limit on
//! connections at once from one address ([`PerAddress`]).
//!
//! Both look at the connection's real client: its peer, or the client a PROXY header names.
//! An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`, on a `[::]` listener) is
//! the IPv4 client it stands for, for the rules and for the count alike.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

/// A network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`), or one
/// address (`192.0.2.7` is `192.0.2.7/32`, `::1` is `::1/128`).
///
/// Parsing refuses an address with bits set past the prefix (`10.1.0.0/8`), which is
/// usually a typing mistake for a longer prefix. A network written in IPv4-mapped IPv6 form
/// (`::ffff:10.0.0.0/104`) is the IPv4 network it maps (`10.0.0.0/8`).
///
/// ```
/// use filefetch::server::Cidr;
/// let net: Cidr = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.20.30.40".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert_eq!("::1".parse::<Cidr>()?.to_string(), "::1/128");
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// # Ok::<(), filefetch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network's first address (no bits set past the prefix); IPv4 when it can be.
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `prefix` leading bits of `addr` (at most 32 for IPv4, 128 for IPv6);
    /// `addr` must have no bits set past them.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(invalid(format!(
                "{addr}/{prefix}: the prefix length is at most {max}"
            )));
        }
        let network = mask(addr, prefix);
        if network != addr {
            return Err(invalid(format!(
                "{addr}/{prefix} has bits set past the prefix (the network is {network}/{prefix})"
            )));
        }
        Ok(match addr {
            // ::ffff:a.b.c.d/(96 + n) is a.b.c.d/n.
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Cidr { addr, prefix },
            },
            _ => Cidr { addr, prefix },
        })
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// How many leading bits of an address the network fixes.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network. An IPv4-mapped IPv6 address is compared as the IPv4
    /// address it maps; IPv6 networks contain IPv6 addresses only.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl FromStr for Cidr {
    type Err = Error;

    /// `ADDRESS/PREFIX` or a bare `ADDRESS`; a refusal is
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) with the option `cidr`.
    fn from_str(text: &str) -> Result<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            invalid(format!(
                "{text:?} is not an address or a network (such as 10.0.0.0/8, 2001:db8::/32, \
                 192.0.2.7)"
            ))
        })?;
        let prefix = match prefix {
            None => max_prefix(addr),
            // Digits only: u8's parser would also take "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| {
                    invalid(format!(
                        "{text}: the prefix length is at most {}",
                        max_prefix(addr)
                    ))
                })?
            }
            Some(_) => {
                return Err(invalid(format!(
                    "{text:?}: the prefix length must be a number from 0 to {}",
                    max_prefix(addr)
                )))
            }
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn invalid(problem: String) -> Error {
    Error::invalid("cidr", problem)
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` with every bit past the first `prefix` cleared (`prefix` at most the width).
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & kept))
        }
    }
}

/// One access rule: clients in the network are allowed, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessRule {
    /// Clients in the network are served.
    Allow(Cidr),
    /// Clients in the network are closed without a response.
    Deny(Cidr),
}

impl AccessRule {
    /// The rule's network.
    pub fn network(&self) -> Cidr {
        match self {
            AccessRule::Allow(net) | AccessRule::Deny(net) => *net,
        }
    }
}

impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessRule::Allow(net) => write!(f, "allow {net}"),
            AccessRule::Deny(net) => write!(f, "deny {net}"),
        }
    }
}

/// Why a client was refused: the rule that denied it, or no allow rule matching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Denied {
    /// This deny rule was the first to match.
    Rule(Cidr),
    /// No rule matched, and with allow rules present that refuses.
    NoAllowMatches,
}

/// Judges a client by `rules`, as nginx's `allow` and `deny` do: in order, the first rule
/// whose network contains the client decides. A client no rule matches is allowed, unless
/// some rule is an allow rule: then it is refused. (No rules: everyone is allowed.)
pub(super) fn judge(rules: &[AccessRule], client: IpAddr) -> std::result::Result<(), Denied> {
    for rule in rules {
        match rule {
            AccessRule::Allow(net) if net.contains(client) => return Ok(()),
            AccessRule::Deny(net) if net.contains(client) => return Err(Denied::Rule(*net)),
            _ => {}
        }
    }
    if rules.iter().any(|r| matches!(r, AccessRule::Allow(_))) {
        Err(Denied::NoAllowMatches)
    } else {
        Ok(())
    }
}

/// Connections at once per client address, up to a limit.
///
/// One mutex over one map: a connection takes it twice (once to count itself in, once on
/// its way out), for a hash lookup each time, some tens of nanoseconds, against the tens of
/// microseconds a connection costs the server in system calls; at the rates one server
/// accepts (tens of thousands a second) it is rarely even contended. An entry lives exactly
/// as long as a connection from its address does: the last one out removes it, so the map
/// never holds more entries than connections.
#[derive(Debug)]
pub(super) struct PerAddress {
    limit: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

impl PerAddress {
    /// At most `limit` connections at once from one address (at least 1).
    pub(super) fn new(limit: usize) -> PerAddress {
        PerAddress {
            limit: u32::try_from(limit).unwrap_or(u32::MAX).max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The limit.
    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts a connection from `client` in, if it is within the limit: the slot counts it
    /// out when dropped, however the connection ends.
    pub(super) fn enter(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let client = client.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            of: self.clone(),
            client,
        })
    }

    /// Addresses with a connection open (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection counted in [`PerAddress`]; counted out when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    of: Arc<PerAddress>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_print() {
        for (text, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.0.2.7", "192.0.2.7/32"),
            ("::ffff:0.0.0.0/96", "0.0.0.0/0"),
            ("64:ff9b::/96", "64:ff9b::/96"),
        ] {
            assert_eq!(net(text).to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
            "10.1.0.0/8",
            "10.0.0.0 /8",
            "::1/129",
            "2001:db8::1/32",
            "fe80::1%eth0",
            "example.org",
            "10.0.0",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(
                matches!(e, Error::InvalidOption { option: "cidr", .. }),
                "{bad}: {e}"
            );
        }
        assert!("10.1.0.0/8"
            .parse::<Cidr>()
            .unwrap_err()
            .to_string()
            .contains("the network is 10.0.0.0/8"));
    }

    #[test]
    fn containment_follows_the_prefix() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.255.255")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        // IPv4-mapped clients are IPv4 clients.
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!net("::/0").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::ffff:127.0.0.1").contains(ip("127.0.0.1")));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        use AccessRule::{Allow, Deny};
        // No rules: everyone.
        assert_eq!(judge(&[], ip("192.0.2.1")), Ok(()));
        // Only deny rules: everyone else is allowed.
        let rules = [Deny(net("10.0.0.0/8"))];
        assert_eq!(
            judge(&rules, ip("10.1.2.3")),
            Err(Denied::Rule(net("10.0.0.0/8")))
        );
        assert_eq!(judge(&rules, ip("192.0.2.1")), Ok(()));
        // Any allow rule: no match is a refusal.
        let rules = [Allow(net("10.0.0.0/8"))];
        assert_eq!(judge(&rules, ip("10.1.2.3")), Ok(()));
        assert_eq!(judge(&rules, ip("192.0.2.1")), Err(Denied::NoAllowMatches));
        // Order decides overlapping rules.
        let rules = [Deny(net("10.0.0.5")), Allow(net("10.0.0.0/8"))];
        assert!(judge(&rules, ip("10.0.0.5")).is_err());
        assert!(judge(&rules, ip("10.0.0.6")).is_ok());
        let rules = [Allow(net("10.0.0.5")), Deny(net("10.0.0.0/8"))];
        assert!(judge(&rules, ip("10.0.0.5")).is_ok());
        assert!(judge(&rules, ip("10.0.0.6")).is_err());
        assert!(judge(&rules, ip("192.0.2.1")).is_err());
        let rules = [Allow(net("::1"))];
        assert!(judge(&rules, ip("::1")).is_ok());
        assert!(judge(&rules, ip("127.0.0.1")).is_err());
        assert!(judge(&rules, ip("::ffff:127.0.0.1")).is_err());
    }

    #[test]
    fn slots_count_in_and_out() {
        let limits = Arc::new(PerAddress::new(2));
        let a = ip("192.0.2.1");
        let first = limits.enter(a).unwrap();
        // The same client through an IPv6 socket.
        let second = limits.enter(ip("::ffff:192.0.2.1")).unwrap();
        assert!(limits.enter(a).is_none());
        let other = limits.enter(ip("192.0.2.2")).unwrap();
        assert_eq!(limits.addresses(), 2);
        drop(first);
        let third = limits.enter(a).unwrap();
        drop((second, third, other));
        // No entry outlives its connections.
        assert_eq!(limits.addresses(), 0);
        assert_eq!(PerAddress::new(0).limit(), 1);
    }
}

//! Where this relay forwards to (docs/protocol.md 12.4, "Destination
//! policy"): never to private, loopback and other non-public ranges, nor
//! to its own addresses, unless it is in such a range itself or its
//! operator allows it; and to at most [`MAX_DESTINATIONS_PER_HOUR`]
//! distinct destination addresses per hour.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Distinct destination addresses this relay starts connections to per
/// hour, over all its clients (review H1): bounds how many hosts and ports
/// its own clients can make it send handshakes to. A new address past it
/// waits (its forwards stay queued and retry).
pub const MAX_DESTINATIONS_PER_HOUR: usize = 1024;
/// The window of [`MAX_DESTINATIONS_PER_HOUR`].
pub const DESTINATION_WINDOW: Duration = Duration::from_secs(3600);

/// Whether `ip` is in a range a relay does not forward to unless it is in
/// such a range itself or its operator allows it (review H1): loopback,
/// unspecified, private (RFC 1918, RFC 4193 unique local, deprecated
/// site-local), shared (RFC 6598), link-local, multicast, broadcast,
/// reserved, benchmarking, IETF-assignment and documentation ranges, also
/// as IPv4-mapped, IPv4-compatible or NAT64 (64:ff9b::/96) IPv6 addresses,
/// and local-use NAT64 (64:ff9b:1::/48).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let [a, b, c, d, e, f, g, h] = v6.segments();
            if [a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [g1, g2] = g.to_be_bytes();
                let [h1, h2] = h.to_be_bytes();
                return is_private_v4(Ipv4Addr::new(g1, g2, h1, h2));
            }
            // IPv4-compatible (::a.b.c.d, deprecated, with :: and ::1).
            [a, b, c, d, e, f] == [0; 6]
                || v6.is_multicast()
                || a & 0xfe00 == 0xfc00
                || a & 0xffc0 == 0xfe80
                // Site-local (deprecated, fec0::/10).
                || a & 0xffc0 == 0xfec0
                // Local-use NAT64 (RFC 8215, 64:ff9b:1::/48).
                || [a, b, c] == [0x64, 0xff9b, 1]
                || (a == 0x2001 && b == 0x0db8)
        }
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && b & 0xc0 == 64)
        // IETF protocol assignments (192.0.0.0/24), benchmarking
        // (198.18.0.0/15), reserved (240.0.0.0/4, with broadcast).
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && b & 0xfe == 18)
        || a >= 240
}

/// Whether a relay whose address names `host` forwards to private ranges
/// by default: only if that host is itself an address in one (two relays
/// on one machine or one LAN federate with no setting; a relay with a
/// public address or a name never probes private ranges).
pub fn host_is_private(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(is_private)
}

/// Whether a relay forwards to private ranges, and why (review M-A): only
/// if its operator allows it (`--forward-allow-private`), or its
/// configured public host is an IP literal in such a range, or it has no
/// public host and listens on an explicit IP in such a range (two relays on
/// one machine or one LAN federate with no setting). A relay listening on
/// all interfaces (0.0.0.0, ::) without a public host counts as public: it
/// may well be reachable from the internet.
pub fn private_policy(
    allow_flag: bool,
    public_host: Option<&str>,
    listen: IpAddr,
) -> (bool, &'static str) {
    if allow_flag {
        return (true, "allowed by --forward-allow-private");
    }
    match public_host {
        Some(host) if host_is_private(host) => (true, "the public host is a private address"),
        Some(_) => (false, "the public host is public or a name"),
        None if listen.is_unspecified() => {
            (false, "listening on all interfaces with no --public-host")
        }
        None if is_private(listen) => (true, "listening on a private address"),
        None => (false, "listening on a public address"),
    }
}

/// Whether the policy refuses a connection to `ip`.
pub fn refused(allow_private: bool, own: &[IpAddr], ip: IpAddr) -> bool {
    if allow_private {
        return false;
    }
    let ip = ip.to_canonical();
    is_private(ip) || own.iter().any(|o| o.to_canonical() == ip)
}

/// Destinations used within the last hour, by last use (review H-B: by
/// first connection, a destination in daily use counted as new an hour
/// after it was first reached, and was refused while others held the cap).
#[derive(Debug, Default)]
pub struct RecentDestinations {
    last: HashMap<Vec<u8>, Instant>,
}

impl RecentDestinations {
    /// Whether a connection to `key` may start at `now`: it was used within
    /// the window, or fewer than [`MAX_DESTINATIONS_PER_HOUR`] others were.
    /// Admitting is a use: the window slides from it.
    pub fn admit(&mut self, key: &[u8], now: Instant) -> bool {
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < DESTINATION_WINDOW;
        if let Some(t) = self.last.get_mut(key)
            && fresh(t)
        {
            *t = now;
            return true;
        }
        if self.last.len() >= MAX_DESTINATIONS_PER_HOUR {
            self.last.retain(|_, t| fresh(t));
        }
        if self.last.len() >= MAX_DESTINATIONS_PER_HOUR && !self.last.contains_key(key) {
            return false;
        }
        self.last.insert(key.to_vec(), now);
        true
    }

    /// Marks `key` used at `now` if it is remembered (a cached connection
    /// in use keeps its destination's slot).
    pub fn touch(&mut self, key: &[u8], now: Instant) {
        if let Some(t) = self.last.get_mut(key) {
            *t = (*t).max(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_destinations_are_recognised() {
        let private = [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.10.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.7",
            "198.51.100.7",
            "203.0.113.7",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "::8.8.8.8",
            "::10.0.0.1",
            "fec0::1",
            "feff::1",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "240.0.0.1",
            "250.1.2.3",
        ];
        for ip in private {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
            "2606:4700::1111",
            "2001:db9::1",
            "fe00::1",
            "::ffff:8.8.8.8",
            "198.17.255.255",
            "198.20.0.1",
            "192.0.1.1",
            "223.255.255.254",
            "64:ff9b:2::1",
            "::1:0:0:1",
            "64:ff9b::808:808",
        ];
        for ip in public {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        assert!(host_is_private("127.0.0.1"));
        assert!(host_is_private("[::1]"));
        assert!(host_is_private("192.168.0.10"));
        assert!(!host_is_private("203.0.114.1"));
        assert!(!host_is_private("relay.example.org"));
        assert!(!host_is_private("localhost"));
    }

    #[test]
    fn private_destinations_are_refused_unless_the_relay_itself_is_private() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        let public: IpAddr = "198.51.99.1".parse().unwrap();
        // The shipped default: all interfaces, no public host.
        assert!(!private_policy(false, None, any4).0);
        assert!(!private_policy(false, None, any6).0);
        assert!(private_policy(true, None, any4).0);
        assert!(private_policy(false, None, lo).0);
        assert!(private_policy(false, None, lan).0);
        assert!(!private_policy(false, None, public).0);
        assert!(private_policy(false, Some("10.0.0.2"), any4).0);
        assert!(private_policy(false, Some("[::1]"), any6).0);
        assert!(!private_policy(false, Some("relay.example.org"), lo).0);
        assert!(!private_policy(false, Some("8.8.8.8"), lan).0);
        assert!(private_policy(true, Some("relay.example.org"), any4).0);
    }

    #[test]
    fn the_relays_own_addresses_are_refused_unless_private_ones_are_allowed() {
        let own: Vec<IpAddr> = vec![
            "198.51.99.1".parse().unwrap(),
            "2606:4700::7".parse().unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(refused(false, &own, ip("198.51.99.1")));
        assert!(refused(false, &own, ip("::ffff:198.51.99.1")));
        assert!(refused(false, &own, ip("2606:4700::7")));
        assert!(!refused(false, &own, ip("198.51.99.2")));
        assert!(refused(false, &own, ip("10.0.0.1")));
        assert!(!refused(true, &own, ip("198.51.99.1")));
        assert!(!refused(true, &own, ip("10.0.0.1")));
    }

    #[test]
    fn distinct_destinations_are_capped_per_hour() {
        let now = Instant::now();
        let mut recent = RecentDestinations::default();
        let key = |n: usize| n.to_be_bytes().to_vec();
        for n in 0..MAX_DESTINATIONS_PER_HOUR {
            assert!(recent.admit(&key(n), now));
        }
        // Known ones still go; a new one waits until the oldest is an hour old.
        assert!(recent.admit(&key(0), now));
        assert!(!recent.admit(&key(MAX_DESTINATIONS_PER_HOUR), now));
        let later = now + DESTINATION_WINDOW;
        assert!(recent.admit(&key(MAX_DESTINATIONS_PER_HOUR), later));
        assert!(recent.last.len() <= MAX_DESTINATIONS_PER_HOUR);
    }

    /// A destination in use keeps its slot past an hour from its first
    /// connection while others fill the rest (it counted as new an hour
    /// after its first connection, and was refused while the cap was full).
    #[test]
    fn a_destination_in_use_keeps_its_slot() {
        let now = Instant::now();
        let mut recent = RecentDestinations::default();
        let key = |n: usize| n.to_be_bytes().to_vec();
        assert!(recent.admit(b"legit", now));
        let half = now + DESTINATION_WINDOW / 2;
        // Used again (a reconnect, or a cached connection in use).
        assert!(recent.admit(b"legit", half));
        recent.touch(b"legit", half);
        for n in 0..MAX_DESTINATIONS_PER_HOUR - 1 {
            assert!(recent.admit(&key(n), half));
        }
        let past_first = now + DESTINATION_WINDOW + Duration::from_secs(1);
        // A new one takes no slot of a destination in use.
        assert!(!recent.admit(b"new", past_first));
        assert!(
            recent.admit(b"legit", past_first),
            "a destination in use was refused"
        );
        // Unused for an hour, its slot goes to a new one.
        let idle = past_first + DESTINATION_WINDOW;
        assert!(recent.admit(b"new", idle));
    }
}

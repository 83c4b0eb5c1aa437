//! Relay addresses: `enlace://<fingerprint>@host:port`.
//!
//! The fingerprint is the relay's [`crate::keys::Fingerprint`]
//! (of its TLS key); clients pin it, so no certificate authority or DNS
//! answer is trusted. Hosts are DNS names, IPv4 literals or bracketed IPv6
//! literals.

use std::fmt;
use std::str::FromStr;

use crate::codec::Reader;
use crate::keys::Fingerprint;
use crate::limits::MAX_HOST_LEN;
use crate::{DecodeError, Error};

const SCHEME: &str = "enlace://";

/// Where a relay is and which key it must prove it holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RelayAddress {
    fingerprint: Fingerprint,
    host: String,
    port: u16,
}

/// Wiping an address (a host a client talks to says whom it talks to) leaves
/// it invalid: do it only to values about to be dropped.
impl zeroize::Zeroize for RelayAddress {
    fn zeroize(&mut self) {
        self.fingerprint.0.zeroize();
        self.host.zeroize();
        self.port.zeroize();
    }
}

impl RelayAddress {
    /// Builds an address, validating the host.
    pub fn new(fingerprint: Fingerprint, host: &str, port: u16) -> Result<Self, Error> {
        check_host(host)?;
        if port == 0 {
            return Err(Error::Address("port must not be 0"));
        }
        Ok(Self {
            fingerprint,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The pinned fingerprint of the relay's key.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Host name or IP literal (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Binary form: fingerprint (32), host length (u8), host, port (u16 BE).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fingerprint.0);
        out.push(self.host.len() as u8);
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
    }

    /// Decodes exactly one binary address.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let addr = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(addr)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let fingerprint = Fingerprint(r.array()?);
        let len = usize::from(r.u8()?);
        let host =
            std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::InvalidField("host"))?;
        let port = r.u16()?;
        let addr =
            Self::new(fingerprint, host, port).map_err(|_| DecodeError::InvalidField("host"))?;
        // One encoding per address: the host must already be lowercase.
        if addr.host != host {
            return Err(DecodeError::InvalidField("host"));
        }
        Ok(addr)
    }
}

fn check_host(host: &str) -> Result<(), Error> {
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(Error::Address("host must be 1 to 253 characters"));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| Error::Address("invalid IPv6 literal"));
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Address("invalid host name"))
    }
}

impl FromStr for RelayAddress {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let rest = text
            .get(..SCHEME.len())
            .filter(|s| s.eq_ignore_ascii_case(SCHEME))
            .and_then(|_| text.get(SCHEME.len()..))
            .ok_or(Error::Address("must start with enlace://"))?;
        let (fp, hostport) = rest
            .split_once('@')
            .ok_or(Error::Address("missing '@' after the fingerprint"))?;
        let fingerprint = Fingerprint::parse(fp)?;
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or(Error::Address("missing ':port'"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| Error::Address("port must be a number from 1 to 65535"))?;
        Self::new(fingerprint, host, port)
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}@{}:{}",
            self.fingerprint, self.host, self.port
        )
    }
}

impl fmt::Debug for RelayAddress {
    // Hosts reveal who talks to whom: keep them out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayAddress({}@..)", self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq";

    #[test]
    fn parse_and_print() {
        for host in ["127.0.0.1", "relay.example.org", "[::1]"] {
            let text = format!("enlace://{FP}@{host}:4433");
            let addr: RelayAddress = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.port(), 4433);
            let mut bin = Vec::new();
            addr.encode(&mut bin);
            assert_eq!(RelayAddress::decode(&bin).unwrap(), addr);
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            format!("http://{FP}@h:1"),
            format!("enlace://{FP}h:1"),
            format!("enlace://{FP}@h"),
            format!("enlace://{FP}@h:0"),
            format!("enlace://{FP}@h:70000"),
            format!("enlace://{FP}@bad_host:1"),
            format!("enlace://{FP}@[zz]:1"),
            format!("enlace://{}@h:1", &FP[1..]),
            format!("enlace://{FP}@-h:1"),
        ] {
            assert!(bad.parse::<RelayAddress>().is_err(), "{bad}");
        }
    }
}

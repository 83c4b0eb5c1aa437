//! Relay addresses as the profile keeps them: parsed once, when the
//! profile is read, and handed around as [`RelayAddress`]; written back as
//! the very text they were read from, so a store's bytes never change.

use enlace_protocol::address::RelayAddress;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::error::Error;

/// A relay address (`enlace://fingerprint@host:port`, the fingerprint
/// pinned) and its parsed form. Text that does not parse is kept as it
/// is, and every use of it fails as an invalid address, as before it was
/// parsed on reading.
#[derive(Clone)]
pub struct StoredRelay {
    text: String,
    parsed: Result<RelayAddress, enlace_protocol::Error>,
}

impl StoredRelay {
    /// The address, kept as its canonical text.
    pub fn new(address: RelayAddress) -> Self {
        Self {
            text: address.to_string(),
            parsed: Ok(address),
        }
    }

    /// Text as stored: parsed now, kept whether it parses or not.
    pub fn from_text(text: String) -> Self {
        let parsed = text.parse();
        Self { text, parsed }
    }

    /// The parsed address, or why the stored text is not one.
    pub fn address(&self) -> Result<&RelayAddress, Error> {
        self.parsed.as_ref().map_err(|e| Error::Address(e.clone()))
    }

    /// The text as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for StoredRelay {
    // Hosts reveal who talks to whom: keep them out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredRelay(..)")
    }
}

impl Serialize for StoredRelay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for StoredRelay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from_text)
    }
}

impl Zeroize for StoredRelay {
    /// Wipes the text and the parsed address (the profile types that hold
    /// a relay zeroize on drop).
    fn zeroize(&mut self) {
        self.text.zeroize();
        if let Ok(address) = &mut self.parsed {
            address.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq";

    #[test]
    fn text_is_kept_and_parsed_once() {
        let text = format!("enlace://{FP}@relay.example.org:4433");
        let relay = StoredRelay::from_text(text.clone());
        assert_eq!(relay.as_str(), text);
        assert_eq!(relay.address().unwrap().port(), 4433);
        let bytes = postcard::to_allocvec(&relay).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&text).unwrap());
        let back: StoredRelay = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.as_str(), text);
        assert_eq!(
            StoredRelay::new(relay.address().unwrap().clone()).as_str(),
            text
        );
        // Text that is not an address reads and writes back unchanged, and
        // fails only where it is used.
        let junk = StoredRelay::from_text("relay".into());
        assert!(matches!(junk.address(), Err(Error::Address(_))));
        let bytes = postcard::to_allocvec(&junk).unwrap();
        let back: StoredRelay = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.as_str(), "relay");
    }

    #[test]
    fn zeroize_wipes_the_text_and_the_parsed_host() {
        let mut relay = StoredRelay::from_text(format!("enlace://{FP}@relay.example.org:4433"));
        relay.zeroize();
        assert_eq!(relay.as_str(), "");
        let address = relay.address().unwrap();
        assert_eq!(address.host(), "");
        assert_eq!(address.port(), 0);
        assert_eq!(address.fingerprint().0, [0; 32]);
    }
}

//! Signed invitations and their text and QR forms.
//!
//! Binary form (`docs/protocol.md` section 11):
//!
//! ```text
//! version u8 (= 1) | relay address | send id [16] | identity key [32]
//! | X25519 key [32] | ML-KEM-768 encapsulation key [1184] | expiry u64
//! | signature [64]
//! ```
//!
//! The signature is ed25519 by the identity key over
//! `"enlace/v1/invitation" || 0x00 || every byte before it`.
//!
//! Text form: `enlace1` followed by the bytes in a 32-character alphabet
//! without `1`, `b`, `i` or `o` (bech32's), then an 8-character (40-bit)
//! checksum, grouped by five with dashes. Case, spaces, dashes and line
//! breaks are ignored when parsing.

use std::fmt;

use ml_kem::array::Array;
use ml_kem::{EncapsulationKey, MlKem768, Seed};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::address::RelayAddress;
use crate::base32;
use crate::codec::{Reader, domain_separated};
use crate::delivery::DhKeyPair;
use crate::envelope::{MAILBOX_ID_LEN, MailboxId};
use crate::keys::{PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, Signature, SigningKeyPair, labels};
use crate::limits::MAX_INVITATION_TEXT_LEN;
use crate::{DecodeError, Error};

/// The invitation format version this crate writes and accepts.
pub const INVITATION_VERSION: u8 = 1;
/// Bytes of an ML-KEM-768 encapsulation key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// What every invitation code starts with.
pub const TEXT_PREFIX: &str = "enlace1";

const ALPHABET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const CHECKSUM_CHARS: usize = 8;
const GROUP: usize = 5;

/// A verified invitation from another organizer: where to write to them and
/// the keys to start a session with. Only [`Invitation::parse`] and
/// [`Invitation::decode`] make one, and both check the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    bytes: Vec<u8>,
    relay: RelayAddress,
    send_id: MailboxId,
    identity: PublicKey,
    dh: [u8; 32],
    kem: Box<[u8; KEM_PUBLIC_KEY_LEN]>,
    expires_at: u64,
}

impl Invitation {
    /// Parses an invitation code as pasted or typed, and checks it: the
    /// prefix, the checksum ([`Error::BadChecksum`] for any typo), the
    /// version ([`Error::UnsupportedVersion`]), the signature
    /// ([`Error::VerificationFailed`]) and the expiry against `now` (Unix
    /// seconds; [`Error::InvitationExpired`]).
    pub fn parse(text: &str, now: u64) -> Result<Self, Error> {
        let bytes = text_to_bytes(text)?;
        let invitation = Self::decode(&bytes)?;
        invitation.check_expiry(now)?;
        Ok(invitation)
    }

    /// Decodes and verifies the binary form. Does not check the expiry (a
    /// stored invitation may be decoded after it); [`Invitation::parse`]
    /// and the handshake do.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != INVITATION_VERSION {
            return Err(Error::UnsupportedVersion(u16::from(version)));
        }
        let relay = RelayAddress::decode_from(&mut r)?;
        let send_id = MailboxId(r.array::<MAILBOX_ID_LEN>()?);
        let identity = PublicKey::from_bytes(&r.array::<PUBLIC_KEY_LEN>()?)?;
        let dh = r.array::<32>()?;
        let kem = Box::new(r.array::<KEM_PUBLIC_KEY_LEN>()?);
        parse_kem_key(&kem)?;
        let expires_at = u64::from_be_bytes(r.array()?);
        let signed_len = bytes.len().saturating_sub(r.remaining());
        let signature = Signature(r.array::<SIGNATURE_LEN>()?);
        r.finish()?;
        let signed = bytes.get(..signed_len).ok_or(DecodeError::Truncated)?;
        identity.verify_parts(labels::INVITATION, &[signed], &signature)?;
        Ok(Self {
            bytes: bytes.to_vec(),
            relay,
            send_id,
            identity,
            dh,
            kem,
            expires_at,
        })
    }

    /// The exact signed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The invitation code: `enlace1-` and groups of five characters joined
    /// by dashes, for pasting into a chat or reading aloud.
    pub fn to_text(&self) -> String {
        bytes_to_text(&self.bytes)
    }

    /// The invitation code as a QR code drawn with Unicode half blocks, two
    /// rows per line, light modules drawn for a dark terminal background.
    /// The code inside is upper case without separators, so it fits QR's
    /// compact alphanumeric mode; [`Invitation::parse`] reads it back.
    #[cfg(feature = "qr")]
    pub fn to_qr(&self) -> String {
        use qrcode::render::unicode::Dense1x2;
        let compact: String = self
            .to_text()
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        // A maximal invitation is about 2,700 characters; a version 40 code
        // at level M holds 3,391 alphanumeric characters.
        match qrcode::QrCode::with_error_correction_level(compact, qrcode::EcLevel::M) {
            Ok(code) => code
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .build(),
            Err(_) => String::new(),
        }
    }

    /// Where the inviter receives: its relay.
    pub fn relay(&self) -> &RelayAddress {
        &self.relay
    }

    /// The send id of the inviter's mailbox on [`Invitation::relay`].
    pub fn send_id(&self) -> MailboxId {
        self.send_id
    }

    /// The inviter's identity key.
    pub fn identity(&self) -> &PublicKey {
        &self.identity
    }

    /// Unix seconds after which the invitation is refused.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    pub(crate) fn dh(&self) -> &[u8; 32] {
        &self.dh
    }

    pub(crate) fn kem(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.kem
    }

    pub(crate) fn check_expiry(&self, now: u64) -> Result<(), Error> {
        if now > self.expires_at {
            return Err(Error::InvitationExpired);
        }
        Ok(())
    }

    /// SHA-256 of the whole signed invitation, bound into the handshake.
    pub(crate) fn digest(&self) -> [u8; 32] {
        Sha256::digest(domain_separated(labels::INVITATION_DIGEST, &[&self.bytes])).into()
    }
}

impl fmt::Debug for Invitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitation")
            .field("relay", &self.relay)
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub(crate) fn parse_kem_key(
    bytes: &[u8; KEM_PUBLIC_KEY_LEN],
) -> Result<EncapsulationKey<MlKem768>, DecodeError> {
    let key = Array::from(*bytes);
    EncapsulationKey::<MlKem768>::new(&key)
        .map_err(|_| DecodeError::InvalidField("ML-KEM-768 encapsulation key"))
}

/// The inviter's side of an invitation: the invitation and the secrets for
/// its X25519 and ML-KEM keys. Keep it (encrypted, [`PendingInvitation::to_bytes`])
/// until someone accepts; then [`PendingInvitation::complete`] turns the
/// accepter's first message into a session. Delete it once it has been
/// used or has expired: its secrets are what protect the first messages.
pub struct PendingInvitation {
    invitation: Invitation,
    dh: DhKeyPair,
    kem_seed: Zeroizing<[u8; 64]>,
}

/// Version of [`PendingInvitation::to_bytes`].
const PENDING_VERSION: u8 = 1;

impl PendingInvitation {
    /// Creates and signs an invitation to write to mailbox `send_id` on
    /// `relay`, valid until `expires_at` (Unix seconds). Draws 96 bytes from
    /// `rng`: the X25519 secret, then the 64-byte ML-KEM seed.
    pub fn create(
        rng: &mut impl CryptoRng,
        identity: &SigningKeyPair,
        relay: RelayAddress,
        send_id: MailboxId,
        expires_at: u64,
    ) -> Self {
        let dh = DhKeyPair::generate(rng);
        let mut kem_seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(kem_seed.as_mut());
        let kem_public = kem_public_key(&kem_seed);
        let mut bytes = Vec::with_capacity(1600);
        bytes.push(INVITATION_VERSION);
        relay.encode(&mut bytes);
        bytes.extend_from_slice(&send_id.0);
        bytes.extend_from_slice(identity.public().as_bytes());
        bytes.extend_from_slice(dh.public());
        bytes.extend_from_slice(&kem_public);
        bytes.extend_from_slice(&expires_at.to_be_bytes());
        let signature = identity.sign_parts(labels::INVITATION, &[&bytes]);
        bytes.extend_from_slice(&signature.0);
        let invitation = Invitation {
            bytes,
            relay,
            send_id,
            identity: *identity.public(),
            dh: *dh.public(),
            kem: Box::new(kem_public),
            expires_at,
        };
        Self {
            invitation,
            dh,
            kem_seed,
        }
    }

    /// The invitation to hand out.
    pub fn invitation(&self) -> &Invitation {
        &self.invitation
    }

    pub(crate) fn dh(&self) -> &DhKeyPair {
        &self.dh
    }

    pub(crate) fn kem_seed(&self) -> &[u8; 64] {
        &self.kem_seed
    }

    /// Serializes for the client's encrypted store: version u8 (= 1),
    /// invitation length u16, invitation, X25519 secret `[32]`, ML-KEM seed
    /// `[64]`. Secret: store encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let inv = self.invitation.as_bytes();
        let mut out = Zeroizing::new(Vec::with_capacity(3 + inv.len() + 96));
        out.push(PENDING_VERSION);
        // Invitations are at most about 1,600 bytes.
        out.extend_from_slice(&(inv.len() as u16).to_be_bytes());
        out.extend_from_slice(inv);
        out.extend_from_slice(&*self.dh.secret_bytes());
        out.extend_from_slice(&*self.kem_seed);
        out
    }

    /// Restores from [`PendingInvitation::to_bytes`]. Checks that the
    /// secrets belong to the invitation's public keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PENDING_VERSION {
            return Err(Error::UnsupportedVersion(u16::from(version)));
        }
        let len = usize::from(r.u16()?);
        let invitation = Invitation::decode(r.take(len)?)?;
        let dh = DhKeyPair::from_secret_bytes(r.array()?);
        let kem_seed = Zeroizing::new(r.array::<64>()?);
        r.finish()?;
        if dh.public() != invitation.dh() || kem_public_key(&kem_seed) != *invitation.kem() {
            return Err(DecodeError::InvalidField("pending invitation keys").into());
        }
        Ok(Self {
            invitation,
            dh,
            kem_seed,
        })
    }
}

impl fmt::Debug for PendingInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingInvitation")
            .field("invitation", &self.invitation)
            .finish_non_exhaustive()
    }
}

pub(crate) fn kem_decapsulation_key(seed: &[u8; 64]) -> ml_kem::DecapsulationKey<MlKem768> {
    ml_kem::DecapsulationKey::<MlKem768>::from_seed(Seed::from(*seed))
}

fn kem_public_key(seed: &[u8; 64]) -> [u8; KEM_PUBLIC_KEY_LEN] {
    use ml_kem::KeyExport;
    kem_decapsulation_key(seed)
        .encapsulation_key()
        .to_bytes()
        .into()
}

/// The text form of invitation bytes (see [`Invitation::to_text`]).
pub(crate) fn bytes_to_text(bytes: &[u8]) -> String {
    let symbols = to_symbols(bytes);
    let mut out = String::with_capacity(TEXT_PREFIX.len() + symbols.len() * 6 / 5 + 16);
    out.push_str(TEXT_PREFIX);
    for (i, &s) in symbols.iter().enumerate() {
        if i % GROUP == 0 {
            out.push('-');
        }
        out.push(char::from(symbol_char(s)));
    }
    out
}

fn symbol_char(symbol: u8) -> u8 {
    ALPHABET
        .get(usize::from(symbol & 31))
        .copied()
        .unwrap_or(b'q')
}

fn char_symbol(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Bytes to 5-bit symbols (zero-padded at the end), then the checksum.
fn to_symbols(bytes: &[u8]) -> Vec<u8> {
    let mut out = base32::to_fives(bytes);
    let checksum = checksum(&out);
    out.extend_from_slice(&checksum);
    out
}

/// The first 40 bits of SHA-256 over the label and the data symbols, as
/// eight symbols. Any change to the data is caught except with probability
/// 2^-40.
fn checksum(symbols: &[u8]) -> [u8; CHECKSUM_CHARS] {
    let digest = Sha256::digest(domain_separated(labels::INVITATION_CHECKSUM, &[symbols]));
    let mut acc = digest
        .iter()
        .take(5)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let mut out = [0u8; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = (acc & 31) as u8;
        acc >>= 5;
    }
    out
}

fn text_to_bytes(text: &str) -> Result<Vec<u8>, Error> {
    if text.len() > MAX_INVITATION_TEXT_LEN {
        return Err(Error::InvitationText("longer than any invitation"));
    }
    let compact: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'-' | b'\n' | b'\r' | b'\t'))
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let data = compact
        .strip_prefix(TEXT_PREFIX.as_bytes())
        .ok_or(Error::InvitationText("must start with enlace1"))?;
    // A character outside the alphabet is a typo like any other.
    let symbols = data
        .iter()
        .map(|&c| char_symbol(c))
        .collect::<Option<Vec<u8>>>()
        .ok_or(Error::BadChecksum)?;
    let (payload, check) = symbols
        .split_at_checked(symbols.len().saturating_sub(CHECKSUM_CHARS))
        .filter(|(p, _)| !p.is_empty())
        .ok_or(Error::InvitationText("too short"))?;
    if checksum(payload) != check {
        return Err(Error::BadChecksum);
    }
    // One encoding per invitation: fewer than 5 padding bits, all zero.
    base32::from_fives(payload).ok_or(Error::InvitationText("malformed padding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> (SigningKeyPair, PendingInvitation) {
        let mut rng = rand::rng();
        let id = SigningKeyPair::generate(&mut rng);
        let fp = SigningKeyPair::from_secret_bytes(&[4; 32])
            .public()
            .relay_fingerprint();
        let relay = RelayAddress::new(fp, "relay.example.org", 4433).unwrap();
        let p = PendingInvitation::create(&mut rng, &id, relay, MailboxId([3; 16]), 1_000);
        (id, p)
    }

    #[test]
    fn text_round_trip_and_checks() {
        let (id, p) = pending();
        let inv = p.invitation();
        let text = inv.to_text();
        assert!(text.starts_with("enlace1-"));
        assert!(!text[7..].contains(['1', 'b', 'i', 'o'].as_slice()));
        let back = Invitation::parse(&text, 1_000).unwrap();
        assert_eq!(&back, inv);
        assert_eq!(back.identity(), id.public());
        // Case, spaces and line breaks are ignored.
        let spaced = text.to_uppercase().replace('-', " \n");
        assert_eq!(Invitation::parse(&spaced, 0).unwrap(), back);
        assert_eq!(
            Invitation::parse(&text, 1_001),
            Err(Error::InvitationExpired)
        );
        assert!(matches!(
            Invitation::parse("hello", 0),
            Err(Error::InvitationText(_))
        ));
    }

    #[test]
    fn every_single_typo_is_a_bad_checksum() {
        let (_, p) = pending();
        let text = p.invitation().to_text();
        let chars: Vec<char> = text.chars().collect();
        for i in (7..chars.len()).step_by(7) {
            if chars[i] == '-' {
                continue;
            }
            for replacement in ['q', 'l', '0', 'b', 'o'] {
                if replacement == chars[i] {
                    continue;
                }
                let mut typo = chars.clone();
                typo[i] = replacement;
                let typo: String = typo.into_iter().collect();
                assert_eq!(Invitation::parse(&typo, 0), Err(Error::BadChecksum), "{i}");
            }
        }
        let short: String = text.chars().take(text.len() - 6).collect();
        assert_eq!(Invitation::parse(&short, 0), Err(Error::BadChecksum));
    }

    #[test]
    fn tampered_binary_fails_signature() {
        let (_, p) = pending();
        let bytes = p.invitation().as_bytes();
        // The expiry's last byte, and a byte of the send id.
        for i in [bytes.len() - 65, 60] {
            let mut bad = bytes.to_vec();
            bad[i] ^= 1;
            assert_eq!(Invitation::decode(&bad), Err(Error::VerificationFailed));
        }
        let mut bad = bytes.to_vec();
        bad[0] = 2;
        assert_eq!(Invitation::decode(&bad), Err(Error::UnsupportedVersion(2)));
    }

    #[test]
    fn pending_round_trip() {
        let (_, p) = pending();
        let bytes = p.to_bytes();
        let back = PendingInvitation::from_bytes(&bytes).unwrap();
        assert_eq!(back.invitation(), p.invitation());
        // The X25519 secret, and the seed half `d` that makes the ML-KEM
        // key (the half `z` only matters for implicit rejection).
        for from_end in [95, 64] {
            let mut bad = bytes.to_vec();
            let i = bad.len() - from_end;
            bad[i] ^= 1;
            assert!(PendingInvitation::from_bytes(&bad).is_err(), "{from_end}");
        }
        assert!(!format!("{p:?}").contains("kem_seed"));
    }

    #[cfg(feature = "qr")]
    #[test]
    fn renders_a_qr_code() {
        let (_, p) = pending();
        let qr = p.invitation().to_qr();
        assert!(qr.lines().count() > 50);
        assert!(qr.contains('\u{2580}') || qr.contains('\u{2584}'));
    }
}

//! The Double Ratchet with header encryption (Signal specification,
//! revision 4, sections 3 and 4), over X25519, HKDF-SHA256, HMAC-SHA256 and
//! ChaCha20-Poly1305.
//!
//! A message is `header ciphertext (81) || body ciphertext`, exactly as long
//! as the envelope body it travels in. The header (version, ratchet public
//! key, previous chain length, counter) is sealed with XChaCha20-Poly1305
//! under the chain's header key and a random nonce, so a relay sees neither
//! ratchet keys nor counters. The body is the padded plaintext sealed with
//! ChaCha20-Poly1305 under a key and nonce expanded from the message key
//! and the header nonce;
//! its associated data binds the session and the header ciphertext as
//! received. Construction details: `docs/protocol.md` section 11.

use std::collections::VecDeque;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{Reader, domain_separated};
use crate::delivery::DhKeyPair;
use crate::keys::labels;
use crate::limits::{MAX_FORWARD_JUMPS, MAX_SKIPPED_CHAINS, MAX_SKIPPED_KEYS};
use crate::{DecodeError, Error};

/// A 32-byte secret that is zeroized on drop.
pub(crate) type Secret = Zeroizing<[u8; 32]>;

/// The header format this crate writes: DH ratchet only. A later version
/// will add a post-quantum KEM ratchet step; the version is inside the
/// encrypted header, so the relay cannot see it either.
pub(crate) const HEADER_VERSION: u8 = 1;
const HEADER_PLAIN_LEN: usize = 1 + 32 + 4 + 4;
const HEADER_NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes of an encrypted header.
pub(crate) const HEADER_LEN: usize = HEADER_NONCE_LEN + HEADER_PLAIN_LEN + TAG_LEN;
/// Bytes of the plaintext length prefix in the padded body.
const LENGTH_PREFIX_LEN: usize = 2;
/// Bytes a ratchet message adds to its plaintext at most (the rest of the
/// body is padding).
pub(crate) const MESSAGE_OVERHEAD: usize = HEADER_LEN + TAG_LEN + LENGTH_PREFIX_LEN;

/// The ratchet state of one party (the Signal specification's `state`).
pub(crate) struct Ratchet {
    dh_self: DhKeyPair,
    dh_remote: Option<[u8; 32]>,
    root: Secret,
    send_chain: Option<Secret>,
    recv_chain: Option<Secret>,
    send_header: Option<Secret>,
    recv_header: Option<Secret>,
    next_send_header: Secret,
    next_recv_header: Secret,
    sent: u32,
    received: u32,
    previous_sent: u32,
    skipped: Skipped,
}

/// A decrypted header.
struct Header {
    dh: [u8; 32],
    previous: u32,
    counter: u32,
}

impl Ratchet {
    /// The party that sends first (the accepter): `RatchetInitAliceHE`.
    pub(crate) fn init_sender(
        rng: &mut impl CryptoRng,
        root: &[u8; 32],
        remote_dh: [u8; 32],
        send_header: Secret,
        next_recv_header: Secret,
    ) -> Result<Self, Error> {
        let dh_self = DhKeyPair::generate(rng);
        let (root, send_chain, next_send_header) = kdf_root(root, &*dh_self.agree(&remote_dh)?);
        Ok(Self {
            dh_self,
            dh_remote: Some(remote_dh),
            root,
            send_chain: Some(send_chain),
            recv_chain: None,
            send_header: Some(send_header),
            recv_header: None,
            next_send_header,
            next_recv_header,
            sent: 0,
            received: 0,
            previous_sent: 0,
            skipped: Skipped::default(),
        })
    }

    /// The party that receives first (the inviter): `RatchetInitBobHE`.
    pub(crate) fn init_receiver(
        dh_self: DhKeyPair,
        root: Secret,
        next_send_header: Secret,
        next_recv_header: Secret,
    ) -> Self {
        Self {
            dh_self,
            dh_remote: None,
            root,
            send_chain: None,
            recv_chain: None,
            send_header: None,
            recv_header: None,
            next_send_header,
            next_recv_header,
            sent: 0,
            received: 0,
            previous_sent: 0,
            skipped: Skipped::default(),
        }
    }

    /// Encrypts `plaintext` into a message of exactly `total_len` bytes.
    pub(crate) fn encrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        ad: &[u8; 32],
        plaintext: &[u8],
        total_len: usize,
    ) -> Result<Vec<u8>, Error> {
        let max = total_len.saturating_sub(MESSAGE_OVERHEAD);
        if total_len < MESSAGE_OVERHEAD
            || plaintext.len() > max
            || plaintext.len() > usize::from(u16::MAX)
        {
            return Err(Error::MessageTooLong {
                len: plaintext.len(),
                max,
            });
        }
        // A session object always has a sending chain (the receiver gets
        // one from its first DH step, before it is handed out).
        let (Some(chain), Some(header_key)) = (&self.send_chain, &self.send_header) else {
            return Err(Error::VerificationFailed);
        };
        let next_sent = self.sent.checked_add(1).ok_or(Error::VerificationFailed)?;
        let (next_chain, message_key) = kdf_chain(chain);
        let mut header = Vec::with_capacity(HEADER_PLAIN_LEN);
        header.push(HEADER_VERSION);
        header.extend_from_slice(self.dh_self.public());
        header.extend_from_slice(&self.previous_sent.to_be_bytes());
        header.extend_from_slice(&self.sent.to_be_bytes());
        let mut nonce = [0u8; HEADER_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(total_len);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&seal_header(header_key, ad, &nonce, &header)?);

        let mut padded = Zeroizing::new(vec![0u8; total_len - HEADER_LEN - TAG_LEN]);
        let len = u16::try_from(plaintext.len()).map_err(|_| Error::VerificationFailed)?;
        padded
            .get_mut(..LENGTH_PREFIX_LEN)
            .ok_or(Error::VerificationFailed)?
            .copy_from_slice(&len.to_be_bytes());
        padded
            .get_mut(LENGTH_PREFIX_LEN..LENGTH_PREFIX_LEN + plaintext.len())
            .ok_or(Error::VerificationFailed)?
            .copy_from_slice(plaintext);
        let (cipher, body_nonce) = body_cipher(&message_key, &nonce);
        let body_ad = domain_separated(labels::RATCHET_BODY, &[ad, &out]);
        let body = cipher
            .encrypt(
                &body_nonce,
                Payload {
                    msg: &padded,
                    aad: &body_ad,
                },
            )
            .map_err(|_| Error::VerificationFailed)?;
        out.extend_from_slice(&body);
        debug_assert_eq!(out.len(), total_len);
        self.send_chain = Some(next_chain);
        self.sent = next_sent;
        Ok(out)
    }

    /// Decrypts a message (`RatchetDecryptHE`). On any failure the state is
    /// unchanged. Every message key is used at most once.
    pub(crate) fn decrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        ad: &[u8; 32],
        message: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (header_ct, body) = message
            .split_at_checked(HEADER_LEN)
            .ok_or(Error::VerificationFailed)?;
        if body.len() < TAG_LEN + LENGTH_PREFIX_LEN {
            return Err(Error::VerificationFailed);
        }

        // 1. A key skipped earlier.
        if let Some(plain) = self.try_skipped(ad, header_ct, body)? {
            return Ok(plain);
        }

        // 2. The current receiving chain.
        let current = match (&self.recv_header, &self.recv_chain) {
            (Some(hk), Some(chain)) => {
                open_header(hk, ad, header_ct)?.map(|header| (header, hk.clone(), chain.clone()))
            }
            _ => None,
        };
        if let Some((header, hk, chain)) = current {
            if Some(header.dh) != self.dh_remote {
                return Err(Error::VerificationFailed);
            }
            let steps = check_jump(self.received, header.counter)?;
            let (next_chain, message_key, skipped) = advance(&chain, self.received, steps);
            let plain = open_body(&message_key, ad, header_ct, body)?;
            self.recv_chain = Some(next_chain);
            self.received = header.counter.saturating_add(1);
            self.skipped.insert(&hk, skipped);
            return Ok(plain);
        }

        // 3. The next receiving chain: a DH ratchet step.
        let Some(header) = open_header(&self.next_recv_header, ad, header_ct)? else {
            return Err(Error::VerificationFailed);
        };
        // Both bounds before any key is derived.
        let old_steps = match &self.recv_chain {
            Some(_) if header.previous > self.received => {
                check_jump(self.received, header.previous)?
            }
            _ => 0,
        };
        let new_steps = check_jump(0, header.counter)?;

        // The rest of the old chain, counters `received..previous`.
        let old_skipped = match &self.recv_chain {
            Some(chain) if old_steps > 0 => {
                let (_, last, mut keys) = advance(chain, self.received, old_steps - 1);
                keys.push((header.previous - 1, last));
                keys
            }
            _ => Vec::new(),
        };
        // A low-order ratchet key is one more authentic but bad message.
        let weak = |_| Error::VerificationFailed;
        let (root, recv_chain, next_recv_header) =
            kdf_root(&self.root, &*self.dh_self.agree(&header.dh).map_err(weak)?);
        let (next_chain, message_key, new_skipped) = advance(&recv_chain, 0, new_steps);
        let plain = open_body(&message_key, ad, header_ct, body)?;
        // The sending half of the step, before anything is committed.
        let dh_self = DhKeyPair::generate(rng);
        let (root, send_chain, next_send_header) =
            kdf_root(&root, &*dh_self.agree(&header.dh).map_err(weak)?);

        // Authentic: commit the step.
        if let Some(old_hk) = self.recv_header.take() {
            self.skipped.insert(&old_hk, old_skipped);
        }
        self.skipped.insert(&self.next_recv_header, new_skipped);
        self.previous_sent = self.sent;
        self.sent = 0;
        self.received = header.counter.saturating_add(1);
        self.send_header = Some(self.next_send_header.clone());
        self.recv_header = Some(std::mem::replace(
            &mut self.next_recv_header,
            next_recv_header,
        ));
        self.dh_remote = Some(header.dh);
        self.recv_chain = Some(next_chain);
        self.dh_self = dh_self;
        self.root = root;
        self.send_chain = Some(send_chain);
        self.next_send_header = next_send_header;
        Ok(plain)
    }

    fn try_skipped(
        &mut self,
        ad: &[u8; 32],
        header_ct: &[u8],
        body: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        for chain_index in 0..self.skipped.chains.len() {
            let Some(chain) = self.skipped.chains.get(chain_index) else {
                break;
            };
            let Some(header) = open_header(&chain.header_key, ad, header_ct)? else {
                continue;
            };
            let Some(key_index) = chain.keys.iter().position(|(n, _)| *n == header.counter) else {
                continue;
            };
            let Some((_, message_key)) = chain.keys.get(key_index) else {
                continue;
            };
            let plain = open_body(message_key, ad, header_ct, body)?;
            self.skipped.remove(chain_index, key_index);
            return Ok(Some(plain));
        }
        Ok(None)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&*self.dh_self.secret_bytes());
        out.extend_from_slice(&*self.root);
        out.extend_from_slice(&*self.next_send_header);
        out.extend_from_slice(&*self.next_recv_header);
        encode_optional(out, self.dh_remote.as_ref());
        encode_optional(out, self.send_chain.as_deref());
        encode_optional(out, self.send_header.as_deref());
        encode_optional(out, self.recv_chain.as_deref());
        encode_optional(out, self.recv_header.as_deref());
        out.extend_from_slice(&self.sent.to_be_bytes());
        out.extend_from_slice(&self.received.to_be_bytes());
        out.extend_from_slice(&self.previous_sent.to_be_bytes());
        self.skipped.encode(out);
    }

    /// Bytes [`Ratchet::encode`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        let optionals = [
            self.dh_remote.is_some(),
            self.send_chain.is_some(),
            self.send_header.is_some(),
            self.recv_chain.is_some(),
            self.recv_header.is_some(),
        ];
        4 * 32
            + optionals
                .iter()
                .map(|&some| if some { 33 } else { 1 })
                .sum::<usize>()
            + 3 * 4
            + self.skipped.encoded_len()
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let dh_self = DhKeyPair::from_secret_bytes(r.array()?);
        let root = Zeroizing::new(r.array()?);
        let next_send_header = Zeroizing::new(r.array()?);
        let next_recv_header = Zeroizing::new(r.array()?);
        let dh_remote = decode_optional(r)?.map(|k| *k);
        let send_chain = decode_optional(r)?;
        let send_header = decode_optional(r)?;
        let recv_chain = decode_optional(r)?;
        let recv_header = decode_optional(r)?;
        if send_chain.is_some() != send_header.is_some()
            || recv_chain.is_some() != recv_header.is_some()
        {
            return Err(DecodeError::InvalidField("ratchet chains"));
        }
        Ok(Self {
            dh_self,
            dh_remote,
            root,
            send_chain,
            recv_chain,
            send_header,
            recv_header,
            next_send_header,
            next_recv_header,
            sent: r.u32()?,
            received: r.u32()?,
            previous_sent: r.u32()?,
            skipped: Skipped::decode_from(r)?,
        })
    }

    /// Number of skipped message keys held.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.total
    }
}

impl fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ratchet")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .field("skipped", &self.skipped.total)
            .finish_non_exhaustive()
    }
}

/// Checks that a receiver at counter `from` may derive keys up to `to`
/// (exclusive of skipping beyond the bound) and returns how many keys to
/// skip. O(1): nothing is derived or stored for a rejected jump.
fn check_jump(from: u32, to: u32) -> Result<u32, Error> {
    match to.checked_sub(from) {
        Some(steps) if steps <= MAX_FORWARD_JUMPS => Ok(steps),
        // Behind the chain (a replay of a used key) or too far ahead.
        _ => Err(Error::VerificationFailed),
    }
}

/// Advances a chain at counter `from` by `steps` skipped keys: returns the
/// chain after the message key for counter `from + steps`, that message
/// key, and the skipped `(counter, key)` pairs before it.
fn advance(chain: &Secret, from: u32, steps: u32) -> (Secret, Secret, Vec<(u32, Secret)>) {
    let mut skipped = Vec::with_capacity(steps as usize);
    let mut chain = chain.clone();
    for i in 0..steps {
        let (next, key) = kdf_chain(&chain);
        skipped.push((from.saturating_add(i), key));
        chain = next;
    }
    let (next, key) = kdf_chain(&chain);
    (next, key, skipped)
}

/// `KDF_RK_HE`: HKDF-SHA256 with the root key as salt, the DH output as
/// input key material and `label || 0x00` as info; 96 bytes split into root
/// key, chain key and next header key.
pub(crate) fn kdf_root(root: &[u8; 32], dh: &[u8; 32]) -> (Secret, Secret, Secret) {
    let mut okm = Zeroizing::new([0u8; 96]);
    // 96 bytes is far below HKDF-SHA256's limit of 8,160.
    let info = domain_separated(labels::RATCHET_ROOT, &[]);
    let _ = Hkdf::<Sha256>::new(Some(root), dh).expand(&info, okm.as_mut());
    split3(&okm)
}

/// Splits 96 bytes of key material into three 32-byte secrets.
pub(crate) fn split3(okm: &[u8; 96]) -> (Secret, Secret, Secret) {
    let mut parts = okm.chunks_exact(32).map(|chunk| {
        let mut s = Zeroizing::new([0u8; 32]);
        copy_prefix(s.as_mut(), chunk);
        s
    });
    let mut next = || parts.next().unwrap_or_default();
    (next(), next(), next())
}

/// Copies as much of `src` as fits into the start of `dst`.
fn copy_prefix(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// `KDF_CK`: HMAC-SHA256 keyed by the chain key, over the single byte 0x02
/// for the next chain key and 0x01 for the message key (as Signal does).
fn kdf_chain(chain: &[u8; 32]) -> (Secret, Secret) {
    (hmac_byte(chain, 0x02), hmac_byte(chain, 0x01))
}

fn hmac_byte(key: &[u8; 32], byte: u8) -> Secret {
    // RFC 2104 zero-pads a short key to the block size (64 bytes); doing
    // it here makes the constructor infallible.
    let mut block = Zeroizing::new([0u8; 64]);
    copy_prefix(block.as_mut(), key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
    mac.update(&[byte]);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The body cipher and nonce of a message: HKDF-SHA256 (salt = the
/// message's random header nonce, info `label || 0x00`) expands the message
/// key into a 32-byte ChaCha20-Poly1305 key and a 12-byte nonce. The salt
/// keeps a sender that encrypts twice with one message key (a restored
/// older state) from sealing two bodies under one key and nonce.
fn body_cipher(message_key: &[u8; 32], header_nonce: &[u8]) -> (ChaCha20Poly1305, Nonce) {
    let mut okm = Zeroizing::new([0u8; 44]);
    let info = domain_separated(labels::RATCHET_MESSAGE_KEY, &[]);
    let _ = Hkdf::<Sha256>::new(Some(header_nonce), message_key).expand(&info, okm.as_mut());
    let mut key: Secret = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    copy_prefix(key.as_mut(), okm.as_ref());
    copy_prefix(&mut nonce, okm.get(32..).unwrap_or_default());
    (ChaCha20Poly1305::new(&(*key).into()), Nonce::from(nonce))
}

fn seal_header(
    key: &[u8; 32],
    ad: &[u8; 32],
    nonce: &[u8; HEADER_NONCE_LEN],
    header: &[u8],
) -> Result<Vec<u8>, Error> {
    let aad = domain_separated(labels::RATCHET_HEADER, &[ad]);
    XChaCha20Poly1305::new(&(*key).into())
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: header,
                aad: &aad,
            },
        )
        .map_err(|_| Error::VerificationFailed)
}

/// Tries one header key. `Ok(None)`: not this key. `Err`: authentic but of
/// an unknown version.
fn open_header(key: &[u8; 32], ad: &[u8; 32], header_ct: &[u8]) -> Result<Option<Header>, Error> {
    let Some((nonce, ct)) = header_ct.split_first_chunk::<HEADER_NONCE_LEN>() else {
        return Ok(None);
    };
    let aad = domain_separated(labels::RATCHET_HEADER, &[ad]);
    let Ok(plain) = XChaCha20Poly1305::new(&(*key).into())
        .decrypt(&XNonce::from(*nonce), Payload { msg: ct, aad: &aad })
    else {
        return Ok(None);
    };
    let mut r = Reader::new(&plain);
    let version = r.u8()?;
    if version != HEADER_VERSION {
        return Err(Error::UnsupportedVersion(u16::from(version)));
    }
    let header = Header {
        dh: r.array()?,
        previous: r.u32()?,
        counter: r.u32()?,
    };
    r.finish()?;
    Ok(Some(header))
}

fn open_body(
    message_key: &[u8; 32],
    ad: &[u8; 32],
    header_ct: &[u8],
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (cipher, nonce) = body_cipher(
        message_key,
        header_ct.get(..HEADER_NONCE_LEN).unwrap_or_default(),
    );
    let body_ad = domain_separated(labels::RATCHET_BODY, &[ad, header_ct]);
    let padded = Zeroizing::new(
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: &body_ad,
                },
            )
            .map_err(|_| Error::VerificationFailed)?,
    );
    unpad(&padded)
}

/// Padding: big-endian `u16` length, the plaintext, zeros to the end. Only
/// the one canonical padding is accepted.
fn unpad(padded: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (len, rest) = padded
        .split_first_chunk::<LENGTH_PREFIX_LEN>()
        .ok_or(Error::VerificationFailed)?;
    let (plain, fill) = rest
        .split_at_checked(usize::from(u16::from_be_bytes(*len)))
        .ok_or(Error::VerificationFailed)?;
    if fill.iter().any(|&b| b != 0) {
        return Err(Error::VerificationFailed);
    }
    Ok(Zeroizing::new(plain.to_vec()))
}

fn encode_optional(out: &mut Vec<u8>, value: Option<&[u8; 32]>) {
    match value {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
}

fn decode_optional(r: &mut Reader<'_>) -> Result<Option<Secret>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Zeroizing::new(r.array()?))),
        _ => Err(DecodeError::InvalidField("optional flag")),
    }
}

/// Skipped message keys, grouped by the header key of their chain, oldest
/// chain first and ascending counters within a chain. At most
/// [`MAX_SKIPPED_KEYS`] in total over at most [`MAX_SKIPPED_CHAINS`]
/// chains; the oldest are dropped first.
#[derive(Default)]
struct Skipped {
    chains: VecDeque<SkippedChain>,
    total: usize,
}

struct SkippedChain {
    header_key: Secret,
    keys: VecDeque<(u32, Secret)>,
}

impl Skipped {
    fn insert(&mut self, header_key: &Secret, keys: Vec<(u32, Secret)>) {
        if keys.is_empty() {
            return;
        }
        self.total += keys.len();
        let same = self
            .chains
            .back()
            .is_some_and(|c| bool::from(c.header_key.ct_eq(&**header_key)));
        match self.chains.back_mut() {
            Some(chain) if same => chain.keys.extend(keys),
            _ => self.chains.push_back(SkippedChain {
                header_key: header_key.clone(),
                keys: keys.into(),
            }),
        }
        while self.chains.len() > MAX_SKIPPED_CHAINS {
            if let Some(oldest) = self.chains.pop_front() {
                self.total -= oldest.keys.len();
            }
        }
        while self.total > MAX_SKIPPED_KEYS {
            let Some(oldest) = self.chains.front_mut() else {
                break;
            };
            if oldest.keys.pop_front().is_some() {
                self.total -= 1;
            }
            if oldest.keys.is_empty() {
                self.chains.pop_front();
            }
        }
    }

    fn remove(&mut self, chain_index: usize, key_index: usize) {
        if let Some(chain) = self.chains.get_mut(chain_index) {
            if chain.keys.remove(key_index).is_some() {
                self.total -= 1;
            }
            if chain.keys.is_empty() {
                self.chains.remove(chain_index);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        2 + self
            .chains
            .iter()
            .map(|c| 32 + 2 + c.keys.len() * (4 + 32))
            .sum::<usize>()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // Bounded by MAX_SKIPPED_KEYS, which fits a u16.
        out.extend_from_slice(&(self.chains.len() as u16).to_be_bytes());
        for chain in &self.chains {
            out.extend_from_slice(&*chain.header_key);
            out.extend_from_slice(&(chain.keys.len() as u16).to_be_bytes());
            for (n, key) in &chain.keys {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&**key);
            }
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut skipped = Self::default();
        let chains = usize::from(r.u16()?);
        if chains > MAX_SKIPPED_CHAINS {
            return Err(DecodeError::InvalidField("skipped key count"));
        }
        for _ in 0..chains {
            let header_key = Zeroizing::new(r.array()?);
            let count = usize::from(r.u16()?);
            skipped.total += count;
            if count == 0 || skipped.total > MAX_SKIPPED_KEYS {
                return Err(DecodeError::InvalidField("skipped key count"));
            }
            let mut keys = VecDeque::with_capacity(count);
            let mut last: Option<u32> = None;
            for _ in 0..count {
                let n = r.u32()?;
                if last.is_some_and(|l| n <= l) {
                    return Err(DecodeError::InvalidField("skipped key order"));
                }
                last = Some(n);
                keys.push_back((n, Zeroizing::new(r.array()?)));
            }
            skipped.chains.push_back(SkippedChain { header_key, keys });
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(rng: &mut impl CryptoRng) -> (Ratchet, Ratchet) {
        let bob_dh = DhKeyPair::generate(rng);
        let bob_pub = *bob_dh.public();
        let sk = [7u8; 32];
        let (hka, nhkb) = (Zeroizing::new([1u8; 32]), Zeroizing::new([2u8; 32]));
        let alice = Ratchet::init_sender(rng, &sk, bob_pub, hka.clone(), nhkb.clone()).unwrap();
        let bob = Ratchet::init_receiver(bob_dh, Zeroizing::new(sk), nhkb, hka);
        (alice, bob)
    }

    const AD: [u8; 32] = [9; 32];

    #[test]
    fn round_trip_and_ratchet() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair(&mut rng);
        for round in 0..4u8 {
            let m = a.encrypt(&mut rng, &AD, &[round; 10], 2048).unwrap();
            assert_eq!(m.len(), 2048);
            assert_eq!(&*b.decrypt(&mut rng, &AD, &m).unwrap(), &[round; 10]);
            assert!(b.decrypt(&mut rng, &AD, &m).is_err(), "replay");
            let m = b.encrypt(&mut rng, &AD, &[round; 1949], 2048).unwrap();
            assert_eq!(&*a.decrypt(&mut rng, &AD, &m).unwrap(), &[round; 1949]);
        }
        assert!(matches!(
            a.encrypt(&mut rng, &AD, &[0; 1950], 2048),
            Err(Error::MessageTooLong {
                len: 1950,
                max: 1949
            })
        ));
    }

    #[test]
    fn out_of_order_and_bounds() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair(&mut rng);
        let msgs: Vec<_> = (0..5u8)
            .map(|i| a.encrypt(&mut rng, &AD, &[i], 2048).unwrap())
            .collect();
        assert_eq!(&*b.decrypt(&mut rng, &AD, &msgs[3]).unwrap(), &[3]);
        assert_eq!(b.skipped_len(), 3);
        assert_eq!(&*b.decrypt(&mut rng, &AD, &msgs[1]).unwrap(), &[1]);
        assert!(b.decrypt(&mut rng, &AD, &msgs[1]).is_err());
        assert_eq!(b.skipped_len(), 2);
        // A new chain from b, then a's old messages still decrypt.
        let reply = b.encrypt(&mut rng, &AD, b"r", 2048).unwrap();
        a.decrypt(&mut rng, &AD, &reply).unwrap();
        let late = a.encrypt(&mut rng, &AD, b"new chain", 2048).unwrap();
        assert_eq!(&*b.decrypt(&mut rng, &AD, &late).unwrap(), b"new chain");
        for i in [4usize, 0, 2] {
            assert_eq!(&*b.decrypt(&mut rng, &AD, &msgs[i]).unwrap(), &[i as u8]);
        }
        assert_eq!(b.skipped_len(), 0);
    }

    #[test]
    fn forward_jump_beyond_bound_rejected_without_state() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair(&mut rng);
        let first = a.encrypt(&mut rng, &AD, b"0", 2048).unwrap();
        b.decrypt(&mut rng, &AD, &first).unwrap();
        for _ in 0..MAX_FORWARD_JUMPS + 1 {
            a.sent += 1;
            let (next, _) = kdf_chain(a.send_chain.as_ref().unwrap());
            a.send_chain = Some(next);
        }
        let far = a.encrypt(&mut rng, &AD, b"far", 2048).unwrap();
        assert_eq!(
            b.decrypt(&mut rng, &AD, &far),
            Err(Error::VerificationFailed)
        );
        assert_eq!(b.skipped_len(), 0);
    }

    #[test]
    fn low_order_ratchet_key_is_the_one_coarse_failure() {
        let mut rng = rand::rng();
        let (a, mut b) = pair(&mut rng);
        // An authentic header (under b's next receiving header key) naming
        // a low-order ratchet key: u = 0.
        let mut header = vec![HEADER_VERSION];
        header.extend_from_slice(&[0; 32]);
        header.extend_from_slice(&[0; 8]);
        let nonce = [3; HEADER_NONCE_LEN];
        let mut m = nonce.to_vec();
        m.extend_from_slice(
            &seal_header(a.send_header.as_ref().unwrap(), &AD, &nonce, &header).unwrap(),
        );
        m.resize(2048, 0);
        let state = |r: &Ratchet| {
            let mut out = Vec::new();
            r.encode(&mut out);
            out
        };
        let before = state(&b);
        assert_eq!(b.decrypt(&mut rng, &AD, &m), Err(Error::VerificationFailed));
        assert_eq!(state(&b), before);
    }

    #[test]
    fn rolled_back_state_does_not_reuse_a_body_key() {
        // An embedder restores an older stored state (a backup, a crash
        // before storing) and encrypts again with the same message key.
        let mut rng = rand::rng();
        let (a, _) = pair(&mut rng);
        let mut stored = Vec::new();
        a.encode(&mut stored);
        let restore = || Ratchet::decode_from(&mut Reader::new(&stored)).unwrap();
        let m1 = restore()
            .encrypt(&mut rng, &AD, b"meet at six", 2048)
            .unwrap();
        let m2 = restore()
            .encrypt(&mut rng, &AD, b"meet at ten", 2048)
            .unwrap();
        let body_xor: Vec<u8> = m1[HEADER_LEN..]
            .iter()
            .zip(&m2[HEADER_LEN..])
            .map(|(x, y)| x ^ y)
            .collect();
        // Same key and nonce would make this the XOR of the padded
        // plaintexts, which are both zero after the text.
        assert_ne!(&body_xor[13..77], &[0u8; 64][..], "a two-time pad");
    }

    #[test]
    fn skipped_store_is_bounded() {
        let mut s = Skipped::default();
        for chain in 0..5u8 {
            let keys = (0..900).map(|n| (n, Zeroizing::new([chain; 32]))).collect();
            s.insert(&Zeroizing::new([chain; 32]), keys);
            assert!(s.total <= MAX_SKIPPED_KEYS);
        }
        assert_eq!(s.total, MAX_SKIPPED_KEYS);
        // The oldest chains went first.
        assert_eq!(*s.chains.front().unwrap().header_key, [2; 32]);
        let mut bytes = Vec::new();
        s.encode(&mut bytes);
        let mut r = Reader::new(&bytes);
        let back = Skipped::decode_from(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(back.total, s.total);
        for chain in 0..MAX_SKIPPED_CHAINS as u32 + 3 {
            s.insert(
                &Zeroizing::new([chain as u8; 32]),
                vec![(chain, Zeroizing::new([0; 32]))],
            );
        }
        assert_eq!(s.chains.len(), MAX_SKIPPED_CHAINS);
        assert_eq!(
            s.total,
            s.chains.iter().map(|c| c.keys.len()).sum::<usize>()
        );
    }

    #[test]
    fn padding_is_canonical() {
        assert_eq!(&*unpad(&[0, 2, 5, 6, 0, 0]).unwrap(), &[5, 6]);
        assert!(unpad(&[0, 2, 5, 6, 0, 1]).is_err());
        assert!(unpad(&[0, 5, 5, 6, 0]).is_err());
        assert!(unpad(&[0]).is_err());
    }
}

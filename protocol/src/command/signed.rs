//! Recipient commands are signed: the connection binding they are bound
//! to, the [`Signed`] wrapper that keeps the bytes as received, and the
//! signing and reading helpers.

use std::fmt;

use crate::DecodeError;
use crate::Error;
use crate::codec::Reader;
use crate::keys::{PublicKey, SIGNATURE_LEN, Signature, SigningKeyPair, labels};

/// A 32-byte value both ends of one connection know and no one else can
/// choose: for QUIC, the TLS exporter output for label
/// `"EXPORTER-enlace-v1-connection-binding"` with an empty context.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBinding(pub [u8; 32]);

impl fmt::Debug for ConnectionBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionBinding(..)")
    }
}

/// The TLS exporter label a QUIC transport uses for [`ConnectionBinding`].
pub const BINDING_EXPORTER_LABEL: &[u8] = b"EXPORTER-enlace-v1-connection-binding";

/// A recipient command with its signature and the exact bytes it covers.
///
/// The command's fields can be read before verification (the relay needs the
/// receive id to find the key), but nothing should act on them until
/// [`Signed::verify`] succeeds.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed<T> {
    command: T,
    /// Tag and fields, exactly as received or encoded.
    signed: Vec<u8>,
    signature: Signature,
}

impl<T> Signed<T> {
    /// The command, not yet verified.
    pub fn unverified(&self) -> &T {
        &self.command
    }

    /// Verifies the signature for this connection and returns the command.
    pub fn verify(&self, binding: &ConnectionBinding, key: &PublicKey) -> Result<&T, Error> {
        key.verify_parts(
            labels::RECIPIENT_COMMAND,
            &[&binding.0, &self.signed],
            &self.signature,
        )?;
        Ok(&self.command)
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.signed);
        out.extend_from_slice(&self.signature.0);
    }
}

impl<T: fmt::Debug> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Signed").field(&self.command).finish()
    }
}

pub(super) fn sign<T>(
    command: T,
    signed: Vec<u8>,
    key: &SigningKeyPair,
    binding: &ConnectionBinding,
) -> Signed<T> {
    let signature = key.sign_parts(labels::RECIPIENT_COMMAND, &[&binding.0, &signed]);
    Signed {
        command,
        signed,
        signature,
    }
}

/// Reads the trailing signature and keeps the bytes before it, as received.
pub(super) fn signed_tail<T>(
    command: T,
    payload: &[u8],
    r: &mut Reader<'_>,
) -> Result<Signed<T>, DecodeError> {
    let signed_len = payload.len() - r.remaining();
    let signed = payload
        .get(..signed_len)
        .ok_or(DecodeError::Truncated)?
        .to_vec();
    let signature = Signature(r.array::<SIGNATURE_LEN>()?);
    Ok(Signed {
        command,
        signed,
        signature,
    })
}

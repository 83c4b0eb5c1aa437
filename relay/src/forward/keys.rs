//! Other relays' signed key bundles, fetched for this relay's clients and
//! kept to hand out while a destination is unreachable, so clients can
//! still seal to it (the bundle is signed by the destination: this relay
//! cannot forge one).

use std::collections::HashMap;
use std::sync::Mutex;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{RelayError, Request, Response};
use enlace_protocol::forward::RelayKey;

use super::dialer::Dialer;
use super::shared::lock;
use crate::clock::Clock;

/// Destinations whose key bundles are remembered.
const MAX_CACHED_KEYS: usize = 1024;

/// Destinations' bundles last fetched, by fingerprint.
#[derive(Debug, Default)]
pub(crate) struct KeyBundles {
    bundles: Mutex<HashMap<[u8; 32], Box<RelayKey>>>,
}

impl KeyBundles {
    /// Fetches and checks `destination`'s signed key for a client.
    pub(crate) async fn fetch(
        &self,
        dialer: &Dialer,
        clock: &Clock,
        destination: &RelayAddress,
    ) -> Response {
        let fetched = async {
            let conn = dialer
                .connect(destination)
                .await
                .map_err(|_| RelayError::Unreachable)?;
            let request = Request::FetchRelayKey {
                destination: destination.clone(),
            };
            match dialer.request(&conn, &request).await {
                Ok(Response::RelayKey(key)) => Ok(key),
                Ok(Response::Error(e)) => Err(e),
                _ => {
                    dialer.forget(destination);
                    Err(RelayError::Unreachable)
                }
            }
        };
        let fp = destination.fingerprint();
        let now = clock.now();
        match fetched.await {
            // Checked here too, so a client is never handed another
            // relay's key by a confused destination.
            Ok(key) => match key.verify(fp, now) {
                Ok(_) => {
                    let mut keys = lock(&self.bundles);
                    if keys.len() >= MAX_CACHED_KEYS {
                        keys.retain(|_, k| k.expires() > now);
                    }
                    if keys.len() < MAX_CACHED_KEYS {
                        keys.insert(fp.0, key.clone());
                    }
                    Response::RelayKey(key)
                }
                Err(_) => Response::Error(RelayError::Unreachable),
            },
            Err(e) => match lock(&self.bundles).get(&fp.0) {
                Some(key) if key.verify(fp, now).is_ok() => Response::RelayKey(key.clone()),
                _ => Response::Error(e),
            },
        }
    }
}

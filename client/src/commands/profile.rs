//! `init`, `relay set`, `relay show` and `wipe`: the profile itself.

use std::io::BufRead;

use enlace_protocol::address::RelayAddress;
use serde_json::json;

use super::context::Ctx;
use super::output::Out;
use crate::error::Error;
use crate::profile::store::{self, KdfParams, Store};
use crate::profile::{Profile, StoredRelay};
use crate::time;

/// Shortest passphrase `init` accepts. An attacker who copies the profile
/// can guess offline; argon2id slows each guess, but only length makes the
/// space large. Five random words are about 30 characters.
pub(crate) const MIN_PASSPHRASE_CHARS: usize = 12;

/// `enlace init`.
pub(crate) fn init(ctx: &Ctx<'_>, out: &mut Out<'_>, relay: Option<&str>) -> Result<(), Error> {
    if Store::exists(&ctx.home) {
        return Err(Error::ProfileExists(ctx.home.clone()));
    }
    let relay = relay
        .map(|r| r.parse::<RelayAddress>().map_err(Error::Address))
        .transpose()?;
    let passphrase = ctx.passphrase(true)?;
    if passphrase.char_count() < MIN_PASSPHRASE_CHARS {
        return Err(Error::WeakPassphrase(MIN_PASSPHRASE_CHARS));
    }
    let mut rng = rand::rng();
    let mut profile = Profile::new(&mut rng, time::now());
    let has_relay = relay.is_some();
    profile.home_relay = relay.map(StoredRelay::new);
    let params = ctx.env.kdf.unwrap_or(KdfParams::DEFAULT);
    Store::create(&ctx.home, &passphrase, params, &profile, &mut rng)?;
    let next = if has_relay {
        "Next: `enlace invite --name NAME`, or `enlace accept --name NAME` and paste the code."
    } else {
        "Next: set your home relay with `enlace relay set enlace://FINGERPRINT@HOST:PORT`."
    };
    out.emit(
        &format!(
            "Created an encrypted profile in {}.\n{next}",
            ctx.home.display()
        ),
        json!({"event": "init", "home": ctx.home.display().to_string()}),
    )
}

/// `enlace relay set`.
pub(crate) fn relay_set(ctx: &Ctx<'_>, out: &mut Out<'_>, address: &str) -> Result<(), Error> {
    let address: RelayAddress = address.parse().map_err(Error::Address)?;
    let fingerprint = address.fingerprint().to_string();
    ctx.update(|p| {
        p.home_relay = Some(StoredRelay::new(address));
        Ok(())
    })?;
    out.emit(
        &format!("Home relay set; its key is pinned ({fingerprint})."),
        json!({"event": "relay-set", "fingerprint": fingerprint}),
    )
}

/// `enlace relay show`.
pub(crate) fn relay_show(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    let relay = profile
        .home_relay
        .as_ref()
        .map(|r| r.as_str().to_owned())
        .ok_or(Error::NoRelay)?;
    out.emit(&relay, json!({"relay": relay}))
}

/// `enlace wipe`.
pub(crate) fn wipe(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
    yes: bool,
) -> Result<(), Error> {
    if !Store::exists(&ctx.home) {
        return Err(Error::NoProfile(ctx.home.clone()));
    }
    if !yes {
        if !ctx.env.interactive {
            return Err(Error::NotConfirmed);
        }
        eprint!(
            "This destroys the profile in {} for good: keys, contacts and messages.\n\
             Type WIPE to go on: ",
            ctx.home.display()
        );
        let mut answer = String::new();
        input
            .read_line(&mut answer)
            .map_err(|e| Error::io("cannot read the confirmation", e))?;
        if answer.trim() != "WIPE" {
            return Err(Error::NotConfirmed);
        }
    }
    store::wipe(&ctx.home, &mut rand::rng())?;
    out.emit(
        "Profile wiped: key material overwritten and files removed.",
        json!({"event": "wiped"}),
    )
}

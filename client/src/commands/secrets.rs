//! `passphrase` and `duress`: the passphrases that open the profile, or
//! erase it.

use std::io::BufRead;

use serde_json::json;

use super::context::Ctx;
use super::output::Out;
use super::profile::MIN_PASSPHRASE_CHARS;
use crate::error::Error;
use crate::profile::store::Passphrase;

fn long_enough(p: Passphrase) -> Result<Passphrase, Error> {
    if p.char_count() < MIN_PASSPHRASE_CHARS {
        return Err(Error::WeakPassphrase(MIN_PASSPHRASE_CHARS));
    }
    Ok(p)
}

/// `enlace passphrase`: the next save's slot is sealed under the new
/// passphrase and the old one's erased.
pub(crate) fn change_passphrase(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
) -> Result<(), Error> {
    let (mut store, _) = ctx.open()?;
    let new = long_enough(ctx.new_passphrase("New passphrase: ", input)?)?;
    store.change_passphrase(&new)?;
    out.emit(
        "Passphrase changed; the profile was re-keyed under it. Stop and start any running \
         `enlace listen`.",
        json!({"event": "passphrase-changed"}),
    )
}

/// `enlace duress set`.
pub(crate) fn duress_set(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
) -> Result<(), Error> {
    let (store, _) = ctx.open()?;
    let duress = long_enough(ctx.new_passphrase("Duress passphrase: ", input)?)?;
    store.set_duress(&duress)?;
    out.emit(
        "Duress passphrase set. Typed instead of yours at any passphrase prompt, it erases this \
         profile for good and opens an empty one. `enlace duress clear` forgets it.",
        json!({"event": "duress-set"}),
    )
}

/// `enlace duress clear`.
pub(crate) fn duress_clear(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (store, _) = ctx.open()?;
    store.clear_duress()?;
    out.emit(
        "Duress passphrase forgotten.",
        json!({"event": "duress-cleared"}),
    )
}

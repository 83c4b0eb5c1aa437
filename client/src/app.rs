//! The commands: each opens the profile, does one thing, saves, prints.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::keys::{PublicKey, SafetyNumber, SigningKeyPair};
use serde_json::json;

use crate::cli::{Cli, Command, NucleusCommand, RelayCommand};
use crate::error::Error;
use crate::net;
use crate::profile::Profile;
use crate::store::{self, KdfParams, Passphrase, Store};
use crate::time;

/// Shortest passphrase `init` accepts. An attacker who copies the profile
/// can guess offline; argon2id slows each guess, but only length makes the
/// space large. Five random words are about 30 characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// What the process environment provides, gathered once by `main` so that
/// tests can run commands in-process without touching global state.
#[derive(Debug, Default)]
pub struct Env {
    /// `ENLACE_PASSPHRASE`, if set.
    pub passphrase: Option<Passphrase>,
    /// Whether a person is at a terminal (prompts are possible).
    pub interactive: bool,
    /// argon2id parameters for `init`. `None` means
    /// [`KdfParams::DEFAULT`]; only in-process tests set this (there is no
    /// flag or variable that reaches it).
    pub kdf: Option<KdfParams>,
}

impl Env {
    /// Reads the real environment.
    pub fn from_process() -> Self {
        Self {
            passphrase: std::env::var("ENLACE_PASSPHRASE").ok().map(Passphrase::new),
            interactive: std::io::stdin().is_terminal(),
            kdf: None,
        }
    }
}

/// Output in text or JSON lines.
pub(crate) struct Out<'a> {
    json: bool,
    w: &'a mut dyn Write,
}

impl Out<'_> {
    /// Prints `text` in text mode, or `value` as one JSON line.
    pub(crate) fn emit(&mut self, text: &str, value: serde_json::Value) -> Result<(), Error> {
        let result = if self.json {
            writeln!(self.w, "{value}")
        } else {
            writeln!(self.w, "{text}")
        };
        result.map_err(|e| Error::io("cannot write output", e))
    }

    /// Prints a line in text mode only.
    pub(crate) fn text(&mut self, text: &str) -> Result<(), Error> {
        if self.json {
            return Ok(());
        }
        writeln!(self.w, "{text}").map_err(|e| Error::io("cannot write output", e))
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli, env: &Env, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), Error> {
    let home = match cli.home.clone() {
        Some(h) => h,
        None => default_home()?,
    };
    let ctx = Ctx {
        home,
        passphrase_file: cli.passphrase_file.clone(),
        env,
    };
    let mut out = Out {
        json: cli.json,
        w: out,
    };
    match cli.command {
        Command::Init { relay } => init(&ctx, &mut out, relay.as_deref()),
        Command::Relay(RelayCommand::Set { address }) => relay_set(&ctx, &mut out, &address),
        Command::Relay(RelayCommand::Show) => relay_show(&ctx, &mut out),
        Command::Contacts => contacts(&ctx, &mut out),
        Command::Verify { name, confirm } => verify(&ctx, &mut out, &name, confirm),
        Command::Status => status(&ctx, &mut out),
        Command::Wipe { yes } => wipe(&ctx, &mut out, input, yes),
        Command::Invite { name } => {
            let (store, _) = ctx.open()?;
            net::block_on(net::invite(&store, &mut out, name))
        }
        Command::Accept { code, name } => {
            let code = if code == "-" {
                read_message(input)?
            } else {
                code
            };
            let (store, _) = ctx.open()?;
            net::block_on(net::accept(&store, &mut out, &code, &name))
        }
        Command::Send { name, text } => {
            let text = match text {
                Some(t) => t,
                None => read_message(input)?,
            };
            let (store, _) = ctx.open()?;
            net::block_on(net::send(&store, &mut out, &name, &text))
        }
        Command::Nucleus(cmd) => nucleus(&ctx, &mut out, input, cmd),
        Command::Read => {
            let (store, _) = ctx.open()?;
            net::block_on(net::read(&store, &mut out))
        }
        Command::Listen => {
            let (store, _) = ctx.open()?;
            net::block_on(net::listen(&store, &mut out))
        }
    }
}

fn nucleus(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
    cmd: NucleusCommand,
) -> Result<(), Error> {
    match cmd {
        NucleusCommand::Create { name } => {
            let name = crate::net::check_name(&name)?;
            let name = ctx.update(|p| crate::nucleus::create(p, &name, &mut rand::rng()))?;
            out.emit(
                &format!(
                    "Created nucleus #{name}. Add members with `enlace nucleus add {name} CONTACT`."
                ),
                json!({"event": "nucleus-created", "nucleus": name}),
            )
        }
        NucleusCommand::List => nucleus_list(ctx, out),
        NucleusCommand::Members { name } => nucleus_members(ctx, out, &name),
        NucleusCommand::Add { name, contact } => {
            let (store, _) = ctx.open()?;
            net::block_on(net::nucleus_change(
                &store,
                out,
                &name,
                &contact,
                net::MemberChange::Add,
            ))
        }
        NucleusCommand::Remove { name, contact } => {
            let (store, _) = ctx.open()?;
            net::block_on(net::nucleus_change(
                &store,
                out,
                &name,
                &contact,
                net::MemberChange::Remove,
            ))
        }
        NucleusCommand::Leave { name } => {
            let (store, _) = ctx.open()?;
            net::block_on(net::nucleus_leave(&store, out, &name))
        }
        NucleusCommand::Send { name, text } => {
            let text = match text {
                Some(t) => t,
                None => read_message(input)?,
            };
            let (store, _) = ctx.open()?;
            net::block_on(net::nucleus_send(&store, out, &name, &text))
        }
    }
}

fn own_identity(profile: &Profile) -> [u8; 32] {
    *SigningKeyPair::from_secret_bytes(&profile.identity)
        .public()
        .as_bytes()
}

fn nucleus_list(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.nuclei.is_empty() {
        out.text("No nuclei yet. Start one with `enlace nucleus create NAME`.")?;
    }
    let me = own_identity(&profile);
    for n in &profile.nuclei {
        let members = n.members();
        let removed = n
            .decoded_ops()
            .iter()
            .any(|op| op.action == crate::nucleus::Action::Remove && op.target == me);
        let state = if members.contains_key(&me) {
            "member"
        } else if removed {
            "removed"
        } else {
            "joining"
        };
        let name = crate::display::terminal_safe(&n.name);
        let text = match state {
            "member" => format!("#{name}  {} member(s)", members.len()),
            "joining" => format!("#{name}  (being added; `enlace read` completes it)"),
            _ => format!("#{name}  (you were removed; `enlace nucleus leave {name}` forgets it)"),
        };
        out.emit(
            &text,
            json!({"nucleus": n.name, "state": state, "members": members.len()}),
        )?;
    }
    Ok(())
}

fn nucleus_members(ctx: &Ctx<'_>, out: &mut Out<'_>, name: &str) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    let n = crate::nucleus::find(&profile, name)?;
    let me = own_identity(&profile);
    let members = n.members();
    if !members.contains_key(&me) {
        return Err(Error::NotMember(n.name.clone()));
    }
    for (key, member) in &members {
        let contact = profile.contacts.iter().find(|c| &c.identity_key == key);
        let (shown, state, session) = if *key == me {
            ("you".to_owned(), "you", true)
        } else if let Some(c) = contact {
            (
                c.name.clone(),
                c.verification().as_str(),
                c.send_to.is_some(),
            )
        } else {
            (
                format!("{} (no session yet)", member.suggested_name),
                "no-session",
                false,
            )
        };
        let introduced = contact.and_then(|c| {
            profile
                .introduced
                .iter()
                .find(|i| !i.pending && i.local == c.id)
                .map(|i| {
                    profile
                        .contacts
                        .iter()
                        .find(|b| b.identity_key == i.by)
                        .map(|b| b.name.clone())
                        .unwrap_or_default()
                })
        });
        let mut text = format!("{}  {state}", crate::display::terminal_safe(&shown));
        if let Some(by) = &introduced {
            text.push_str(&format!(
                "  introduced by {}",
                crate::display::terminal_safe(by)
            ));
        }
        out.emit(
            &text,
            json!({"nucleus": n.name, "member": shown, "verification": state,
                   "session": session, "introduced_by": introduced,
                   "fingerprint": crate::nucleus::fingerprint(key).map(|f| hex(&f))}),
        )?;
    }
    Ok(())
}

/// Text from standard input, without its final newline (`send` without
/// TEXT, `accept -`).
fn read_message(input: &mut dyn BufRead) -> Result<String, Error> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| Error::io("cannot read standard input", e))?;
    let trimmed = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(trimmed);
    Ok(text)
}

fn default_home() -> Result<PathBuf, Error> {
    dirs::data_dir().map(|d| d.join("enlace")).ok_or_else(|| {
        Error::io(
            "no platform data directory",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

pub(crate) struct Ctx<'a> {
    pub(crate) home: PathBuf,
    passphrase_file: Option<PathBuf>,
    env: &'a Env,
}

impl Ctx<'_> {
    /// The passphrase from (in order) `--passphrase-file`,
    /// `ENLACE_PASSPHRASE`, or a terminal prompt (twice when `confirm`).
    fn passphrase(&self, confirm: bool) -> Result<Passphrase, Error> {
        if let Some(path) = &self.passphrase_file {
            return read_passphrase_file(path);
        }
        if let Some(p) = &self.env.passphrase {
            return Ok(Passphrase::new(p.expose().to_owned()));
        }
        if !self.env.interactive {
            return Err(Error::NoPassphrase);
        }
        let first = Passphrase::new(
            rpassword::prompt_password("Passphrase: ").map_err(|_| Error::NoPassphrase)?,
        );
        if confirm {
            let second = Passphrase::new(
                rpassword::prompt_password("Same passphrase again: ")
                    .map_err(|_| Error::NoPassphrase)?,
            );
            if first.expose() != second.expose() {
                return Err(Error::PassphraseMismatch);
            }
        }
        Ok(first)
    }

    /// Opens the profile (derives the key once for this run).
    pub(crate) fn open(&self) -> Result<(Store, Profile), Error> {
        if !Store::exists(&self.home) {
            return Err(Error::NoProfile(self.home.clone()));
        }
        Store::open(&self.home, &self.passphrase(false)?)
    }

    /// Opens the profile, applies `change` under the lock, saves it.
    fn update<T>(&self, change: impl FnOnce(&mut Profile) -> Result<T, Error>) -> Result<T, Error> {
        let (store, _) = self.open()?;
        update(&store, change)
    }
}

/// Applies `change` to the profile under the lock and saves it; nothing
/// is saved if `change` fails.
pub(crate) fn update<T>(
    store: &Store,
    change: impl FnOnce(&mut Profile) -> Result<T, Error>,
) -> Result<T, Error> {
    let _lock = store.lock()?;
    let mut profile = store.load()?;
    let result = change(&mut profile)?;
    store.save(&profile, &mut rand::rng())?;
    Ok(result)
}

fn read_passphrase_file(path: &Path) -> Result<Passphrase, Error> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(Error::PassphraseFile)?);
    let line = text.lines().next().unwrap_or_default();
    Ok(Passphrase::new(line.to_owned()))
}

fn init(ctx: &Ctx<'_>, out: &mut Out<'_>, relay: Option<&str>) -> Result<(), Error> {
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
    profile.home_relay = relay.as_ref().map(ToString::to_string);
    let params = ctx.env.kdf.unwrap_or(KdfParams::DEFAULT);
    Store::create(&ctx.home, &passphrase, params, &profile, &mut rng)?;
    let next = if relay.is_some() {
        "Next: `enlace invite --name NAME`, or `enlace accept CODE --name NAME`."
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

fn relay_set(ctx: &Ctx<'_>, out: &mut Out<'_>, address: &str) -> Result<(), Error> {
    let address: RelayAddress = address.parse().map_err(Error::Address)?;
    ctx.update(|p| {
        p.home_relay = Some(address.to_string());
        Ok(())
    })?;
    out.emit(
        &format!(
            "Home relay set; its key is pinned ({}).",
            address.fingerprint()
        ),
        json!({"event": "relay-set", "fingerprint": address.fingerprint().to_string()}),
    )
}

fn relay_show(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    let relay = profile.home_relay.clone().ok_or(Error::NoRelay)?;
    out.emit(&relay, json!({"relay": relay}))
}

fn contacts(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.contacts.is_empty() {
        out.text("No contacts yet. Invite someone with `enlace invite --name NAME`.")?;
    }
    for c in &profile.contacts {
        let state = c.verification().as_str();
        // Contacts made by a nucleus introduction say who introduced them.
        let introduced_by = profile
            .introduced
            .iter()
            .find(|i| !i.pending && i.local == c.id)
            .map(|i| {
                profile
                    .contacts
                    .iter()
                    .find(|b| b.identity_key == i.by)
                    .map_or_else(|| "a former contact".to_owned(), |b| b.name.clone())
            });
        let note = introduced_by
            .as_ref()
            .map(|by| format!("  introduced by {}", crate::display::terminal_safe(by)))
            .unwrap_or_default();
        out.emit(
            &format!(
                "{}  {state}  added {}{note}",
                crate::display::terminal_safe(&c.name),
                time::format_utc(c.added_at)
            ),
            json!({"name": c.name, "verification": state, "added_at": c.added_at,
                   "introduced_by": introduced_by}),
        )?;
    }
    let pending = profile.invitations.len();
    if pending > 0 {
        out.text(&format!(
            "{pending} invitation(s) not accepted yet; `enlace read` picks up new contacts."
        ))?;
    }
    Ok(())
}

fn verify(ctx: &Ctx<'_>, out: &mut Out<'_>, name: &str, confirm: bool) -> Result<(), Error> {
    let (store, profile) = ctx.open()?;
    let contact = profile
        .contact(name)
        .ok_or_else(|| Error::UnknownContact(name.to_owned()))?;
    let contact_name = contact.name.clone();
    let theirs = PublicKey::from_bytes(&contact.identity_key).map_err(|_| Error::CannotOpen)?;
    let ours = SigningKeyPair::from_secret_bytes(&profile.identity);
    let number = SafetyNumber::new(ours.public(), &theirs);
    drop(profile);
    if confirm {
        let state = update(&store, |p| {
            let c = p
                .contact_mut(&contact_name)
                .ok_or_else(|| Error::UnknownContact(contact_name.clone()))?;
            c.confirm_verified();
            Ok(c.verification())
        })?;
        return out.emit(
            &format!("{contact_name} is now verified."),
            json!({"name": contact_name, "verification": state.as_str(),
                   "safety_number": number.digits()}),
        );
    }
    let qr = crate::qr::render(number.digits().as_bytes()).unwrap_or_default();
    out.emit(
        &format!(
            "Safety number with {contact_name}:\n\n{number}\n\n{qr}\n\
             Compare it with {contact_name}'s screen, in person. If every digit matches, run\n  \
             enlace verify {contact_name} --confirm"
        ),
        json!({"name": contact_name, "safety_number": number.digits(),
               "verification": contact_state(&store, &contact_name)?}),
    )
}

fn contact_state(store: &Store, name: &str) -> Result<&'static str, Error> {
    let profile = store.load()?;
    Ok(profile
        .contact(name)
        .map(|c| c.verification().as_str())
        .unwrap_or("unknown"))
}

fn status(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.sent.is_empty() {
        out.text("No messages sent yet.")?;
    }
    for m in &profile.sent {
        let to = profile
            .contact_by_id(m.contact)
            .map(|c| c.name.as_str())
            .unwrap_or("(removed contact)");
        let id = hex(&m.message_id);
        out.emit(
            &format!(
                "{}  to {to}  {}  {}",
                time::format_utc(m.sent_at),
                m.status.as_str(),
                id.get(..8).unwrap_or_default()
            ),
            json!({"to": to, "message_id": id, "sent_at": m.sent_at,
                   "status": m.status.as_str(), "parts": m.parts}),
        )?;
    }
    Ok(())
}

fn wipe(ctx: &Ctx<'_>, out: &mut Out<'_>, input: &mut dyn BufRead, yes: bool) -> Result<(), Error> {
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

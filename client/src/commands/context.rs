//! What every command starts from: the process environment, the profile
//! directory, the passphrase, and standard input.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::profile::Profile;
use crate::profile::store::{KdfParams, Passphrase, Store};

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

/// The profile directory and where its passphrase comes from.
pub(crate) struct Ctx<'a> {
    /// The profile directory.
    pub(crate) home: PathBuf,
    passphrase_file: Option<PathBuf>,
    /// The process environment.
    pub(crate) env: &'a Env,
}

impl<'a> Ctx<'a> {
    /// The profile in `home` (or the platform data directory).
    pub(crate) fn new(
        home: Option<PathBuf>,
        passphrase_file: Option<PathBuf>,
        env: &'a Env,
    ) -> Result<Self, Error> {
        let home = match home {
            Some(h) => h,
            None => default_home()?,
        };
        Ok(Self {
            home,
            passphrase_file,
            env,
        })
    }

    /// The passphrase from (in order) `--passphrase-file`,
    /// `ENLACE_PASSPHRASE`, or a terminal prompt (twice when `confirm`).
    pub(crate) fn passphrase(&self, confirm: bool) -> Result<Passphrase, Error> {
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
    pub(crate) fn update<T>(
        &self,
        change: impl FnOnce(&mut Profile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (store, _) = self.open()?;
        store.update(change)
    }
}

fn default_home() -> Result<PathBuf, Error> {
    dirs::data_dir().map(|d| d.join("enlace")).ok_or_else(|| {
        Error::io(
            "no platform data directory",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

fn read_passphrase_file(path: &Path) -> Result<Passphrase, Error> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(Error::PassphraseFile)?);
    let line = text.lines().next().unwrap_or_default();
    Ok(Passphrase::new(line.to_owned()))
}

/// Text from standard input, without its final newline (`send` without
/// TEXT, `accept -`).
pub(crate) fn read_message(input: &mut dyn BufRead) -> Result<String, Error> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| Error::io("cannot read standard input", e))?;
    let trimmed = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(trimmed);
    Ok(text)
}

/// The text of a message: `text` if given, else standard input.
pub(crate) fn text_or_input(
    text: Option<String>,
    input: &mut dyn BufRead,
) -> Result<String, Error> {
    match text {
        Some(t) => Ok(t),
        None => read_message(input),
    }
}

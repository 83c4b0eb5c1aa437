//! What every command starts from: the process environment, the profile
//! directory, the passphrase, and standard input.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::display::terminal_safe;
use crate::error::{Error, MessageError};
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

/// Where the passphrase comes from, as the command line says.
#[derive(Debug, Default)]
pub(crate) struct PassphraseSource {
    /// `--passphrase-fd N`.
    pub(crate) fd: Option<u32>,
    /// `--passphrase-file FILE`.
    pub(crate) file: Option<PathBuf>,
}

/// The profile directory and where its passphrase comes from.
pub(crate) struct Ctx<'a> {
    /// The profile directory.
    pub(crate) home: PathBuf,
    source: PassphraseSource,
    /// The first line of standard input, read before the command ran,
    /// for `--passphrase-fd 0`.
    from_stdin: Option<Passphrase>,
    /// The process environment.
    pub(crate) env: &'a Env,
}

impl<'a> Ctx<'a> {
    /// The profile in `home` (or the platform data directory). With
    /// `--passphrase-fd 0` the passphrase is the first line of `input`,
    /// read now, so the command reads what follows.
    pub(crate) fn new(
        home: Option<PathBuf>,
        source: PassphraseSource,
        env: &'a Env,
        input: &mut dyn BufRead,
    ) -> Result<Self, Error> {
        let home = match home {
            Some(h) => h,
            None => default_home()?,
        };
        let from_stdin = match source.fd {
            Some(0) => Some(Passphrase::new(
                read_line(input).map_err(|e| Error::PassphraseFd(0, e))?,
            )),
            _ => None,
        };
        Ok(Self {
            home,
            source,
            from_stdin,
            env,
        })
    }

    /// The passphrase from (in order) `--passphrase-fd`,
    /// `--passphrase-file`, `ENLACE_PASSPHRASE`, or a terminal prompt
    /// (twice when `confirm`).
    pub(crate) fn passphrase(&self, confirm: bool) -> Result<Passphrase, Error> {
        if let Some(p) = &self.from_stdin {
            return Ok(Passphrase::new(p.expose().to_owned()));
        }
        if let Some(fd) = self.source.fd {
            return read_passphrase_fd(fd);
        }
        if let Some(path) = &self.source.file {
            return read_passphrase_file(path);
        }
        if let Some(p) = &self.env.passphrase {
            return Ok(Passphrase::new(p.expose().to_owned()));
        }
        if !self.env.interactive {
            return Err(Error::NoPassphrase);
        }
        prompt_twice("Passphrase: ", confirm)
    }

    /// A new passphrase (`passphrase`, `duress set`): asked twice on a
    /// terminal, else the first line of standard input.
    pub(crate) fn new_passphrase(
        &self,
        prompt: &str,
        input: &mut dyn BufRead,
    ) -> Result<Passphrase, Error> {
        if self.env.interactive {
            return prompt_twice(prompt, true);
        }
        let line = read_line(input).map_err(|e| Error::io("cannot read standard input", e))?;
        if line.is_empty() {
            return Err(Error::NoPassphrase);
        }
        Ok(Passphrase::new(line))
    }

    /// Opens the profile: derives the key once for this run and saves it
    /// re-keyed (see `profile::store`).
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

fn prompt_twice(prompt: &str, confirm: bool) -> Result<Passphrase, Error> {
    let first =
        Passphrase::new(rpassword::prompt_password(prompt).map_err(|_| Error::NoPassphrase)?);
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

fn default_home() -> Result<PathBuf, Error> {
    dirs::data_dir().map(|d| d.join("enlace")).ok_or_else(|| {
        Error::io(
            "no platform data directory",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// The longest passphrase line read: far more than anyone types.
const MAX_PASSPHRASE_LINE: usize = 4096;

/// The most text read from standard input for one message or code: more
/// than a message may hold (64 parts of under 2 KiB), so a longer one is
/// refused by the message's own limit first.
const MAX_MESSAGE_INPUT: usize = 256 * 1024;

/// One line, without its end, read a byte at a time so that nothing after
/// it is consumed (the rest of standard input is the command's).
fn read_line(input: &mut dyn Read) -> std::io::Result<String> {
    // Allocated once at its largest: growing would leave copies behind.
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE_LINE));
    let mut byte = [0u8; 1];
    while line.len() < MAX_PASSPHRASE_LINE {
        if input.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(std::mem::take(&mut *line)).map_err(|e| {
        drop(Zeroizing::new(e.into_bytes()));
        std::io::ErrorKind::InvalidData.into()
    })
}

/// `--passphrase-fd N` for N other than 0: the descriptor is opened again
/// through `/dev/fd/N` (no unsafe code), and its first line read.
fn read_passphrase_fd(fd: u32) -> Result<Passphrase, Error> {
    let mut file =
        std::fs::File::open(format!("/dev/fd/{fd}")).map_err(|e| Error::PassphraseFd(fd, e))?;
    let line = read_line(&mut file).map_err(|e| Error::PassphraseFd(fd, e))?;
    Ok(Passphrase::new(line))
}

/// `--passphrase-file FILE`: its first line, if no one but its owner can
/// read it.
fn read_passphrase_file(path: &Path) -> Result<Passphrase, Error> {
    let mut file = std::fs::File::open(path).map_err(Error::PassphraseFile)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(Error::PassphraseFile)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::PassphraseFileMode(mode & 0o777));
        }
    }
    let line = read_line(&mut file).map_err(Error::PassphraseFile)?;
    Ok(Passphrase::new(line))
}

/// Text from standard input, without its final newline, zeroized when
/// dropped.
pub(crate) fn read_message(input: &mut dyn BufRead) -> Result<Zeroizing<String>, Error> {
    // Allocated once, larger than any message may be, so that reading
    // never moves the text and leaves a copy behind.
    let mut text = Zeroizing::new(String::with_capacity(MAX_MESSAGE_INPUT + 64));
    input
        .take(MAX_MESSAGE_INPUT as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io("cannot read standard input", e))?;
    if text.len() > MAX_MESSAGE_INPUT {
        return Err(Error::MessageTooLong(MessageError::TooLong(
            MAX_MESSAGE_INPUT,
        )));
    }
    let trimmed = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(trimmed);
    Ok(text)
}

/// Who a message is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum To<'n> {
    /// A contact (`enlace send NAME`).
    Contact(&'n str),
    /// A nucleus (`enlace nucleus send NAME`).
    Nucleus(&'n str),
}

/// The text of a message: never from the command line (`given` is
/// refused, with the safe form); on a terminal after a one-line prompt,
/// else from standard input.
pub(crate) fn message_text(
    ctx: &Ctx<'_>,
    input: &mut dyn BufRead,
    to: To<'_>,
    given: Vec<String>,
) -> Result<Zeroizing<String>, Error> {
    refuse_text(to, given)?;
    read_text(ctx, input, to)
}

impl To<'_> {
    /// The command that sends to it, as typed in a shell.
    fn command(self) -> String {
        match self {
            To::Contact(name) => format!("send {}", shell_word(name)),
            To::Nucleus(name) => format!("nucleus send {}", shell_word(name)),
        }
    }
}

/// Refuses message text given on the command line, naming the safe form.
pub(crate) fn refuse_text(to: To<'_>, given: Vec<String>) -> Result<(), Error> {
    if given.is_empty() {
        return Ok(());
    }
    drop(given.into_iter().map(Zeroizing::new).collect::<Vec<_>>());
    let command = to.command();
    Err(Error::SecretOnCommandLine {
        what: "message text",
        safe: format!(
            "run `enlace {command}` and type the message, or pipe it in: \
             `enlace {command} < message.txt`"
        ),
    })
}

/// Reads a message's text: on a terminal after a one-line prompt that
/// says how to finish, else all of standard input.
pub(crate) fn read_text(
    ctx: &Ctx<'_>,
    input: &mut dyn BufRead,
    to: To<'_>,
) -> Result<Zeroizing<String>, Error> {
    if ctx.env.interactive {
        let shown = match to {
            To::Contact(name) => terminal_safe(name),
            To::Nucleus(name) => format!("#{}", terminal_safe(name)),
        };
        eprintln!("Message to {shown}, end with {END_OF_INPUT}:");
    }
    read_message(input)
}

/// `word` as the shell would need it typed, made safe for a terminal:
/// quoted unless it is plain.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./@:".contains(c));
    if plain {
        terminal_safe(word)
    } else {
        format!("'{}'", terminal_safe(&word.replace('\'', "'\\''")))
    }
}

/// The key that ends input on a terminal.
#[cfg(windows)]
const END_OF_INPUT: &str = "Ctrl-Z and Enter";
#[cfg(not(windows))]
const END_OF_INPUT: &str = "Ctrl-D";

/// Refuses an invitation code given on the command line (any code but
/// `-`), naming the safe form.
pub(crate) fn refuse_code(given: Option<String>, name: &str) -> Result<(), Error> {
    match given.map(Zeroizing::new) {
        Some(code) if code.as_str() != "-" => Err(Error::SecretOnCommandLine {
            what: "an invitation code",
            safe: format!(
                "run `enlace accept --name {name}` and paste it, or pipe it in: \
                 `enlace accept --name {name} < code.txt`",
                name = shell_word(name)
            ),
        }),
        _ => Ok(()),
    }
}

/// Reads an invitation code: pasted on a terminal (one line), else all of
/// standard input.
pub(crate) fn read_code(
    ctx: &Ctx<'_>,
    input: &mut dyn BufRead,
) -> Result<Zeroizing<String>, Error> {
    if ctx.env.interactive {
        eprint!("Paste the invitation code and press Enter: ");
        let line = read_line(input).map_err(|e| Error::io("cannot read standard input", e))?;
        return Ok(Zeroizing::new(line));
    }
    read_message(input)
}

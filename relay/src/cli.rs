//! The `enlace-relay` command: parse settings, open storage, run until
//! SIGINT or SIGTERM.

use std::fs::DirBuilder;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Backend, Cli, Command, Config, ConfigError};
use crate::identity::{Identity, IdentityError};
use crate::run::RunError;
use crate::store::{Store, StoreError};

/// Database file (redb) or directory (sled) inside the data directory.
pub const DB_NAME: &str = "mailboxes.redb";
/// sled's database directory inside the data directory.
pub const SLED_DB_NAME: &str = "mailboxes.sled";

/// Log filter when RUST_LOG is unset. quinn-udp warns about a failed
/// `sendmsg` with the client's IP address in the message; at the default
/// level the log must not identify clients, so it gets errors only.
pub const DEFAULT_LOG: &str = "info,quinn_udp=error";

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enlace-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the relay did not run, as the operator reads it: one line saying
/// what went wrong and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `address` found no identity to print.
    #[error("{0} (is --data-dir right? the relay creates its identity on first start)")]
    NoIdentity(#[source] IdentityError),
    /// The identity could not be loaded or made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The data directory could not be made.
    #[error("cannot create data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed its integrity check.
    #[error(
        "cannot open {path}: {source}; restore it from a backup, or move it aside to start with an empty store"
    )]
    CorruptStore {
        /// The database.
        path: PathBuf,
        /// What failed.
        source: StoreError,
    },
    /// The database could not be opened.
    #[error("cannot open {path}: {source}")]
    OpenStore {
        /// The database.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The database could not be made private to the owner.
    #[error("cannot restrict {path}: {source}")]
    Restrict {
        /// The database.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--backend sled` in a build without it.
    #[error("this build has no sled backend")]
    NoSled,
    /// The async runtime could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The relay could not start.
    #[error(transparent)]
    Run(#[from] RunError),
}

fn run(cli: Cli) -> Result<(), CliError> {
    let config = cli.settings.resolve()?;
    if let Some(Command::Address) = cli.command {
        let identity = Identity::load(&config.data_dir).map_err(CliError::NoIdentity)?;
        let address = config.relay_address(identity.fingerprint(), &config.listen)?;
        println!("{address}");
        return Ok(());
    }
    create_private_dir(&config.data_dir)?;
    let identity = Identity::load_or_create(&config.data_dir)?;
    let store = open_store(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(serve(config, store, identity))
}

async fn serve(config: Config, store: Arc<dyn Store>, identity: Identity) -> Result<(), CliError> {
    let limits = config.limits;
    crate::run::run(
        config,
        store,
        identity,
        crate::shutdown::signal(),
        |running| {
            tracing::info!(
                "enlace relay listening on UDP port {} (quota {} envelopes, ttl {} s)",
                running.local_addr.port(),
                limits.quota,
                limits.ttl_secs
            );
            // The one line on standard output: the address to paste.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", running.address);
            let _ = out.flush();
        },
    )
    .await?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CliError::DataDir {
            dir: dir.to_owned(),
            source,
        })
}

fn open_store(config: &Config) -> Result<Arc<dyn Store>, CliError> {
    let dir = &config.data_dir;
    match config.backend {
        Backend::Redb => {
            let path = dir.join(DB_NAME);
            let store = crate::store::redb::RedbStore::open(&path).map_err(|source| {
                let path = path.clone();
                match source {
                    StoreError::Corrupt(_) => CliError::CorruptStore { path, source },
                    _ => CliError::OpenStore { path, source },
                }
            })?;
            // Mailbox ids, recipient and delivery keys live here: owner only,
            // even in a data directory that others may enter.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| CliError::Restrict { path, source })?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "sled")]
        Backend::Sled => {
            let path = dir.join(SLED_DB_NAME);
            tracing::warn!("sled backend: stored envelopes may be lost on power failure");
            let store = crate::store::sled::SledStore::open(&path)
                .map_err(|source| CliError::OpenStore { path, source })?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "sled"))]
        Backend::Sled => Err(CliError::NoSled),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn default_log_level_drops_quinn_udp_warnings_that_carry_client_ips() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(DEFAULT_LOG))
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "quinn_udp", "sendmsg error: destination: 198.51.100.7:4433");
            tracing::info!(target: "enlace_relay", "relay info line");
        });
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(out.contains("relay info line"), "{out}");
        assert!(!out.contains("198.51.100.7"), "{out}");
    }

    #[test]
    fn the_systemd_unit_keeps_the_default_log_filter() {
        let unit = include_str!("../../contrib/enlace-relay.service");
        assert!(
            !unit
                .lines()
                .any(|l| l.trim_start().starts_with("Environment=RUST_LOG")),
            "a RUST_LOG in the unit replaces DEFAULT_LOG"
        );
    }

    #[test]
    fn the_database_is_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        // A data directory that already exists with a permissive mode.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cli = Cli::parse_from(["enlace-relay", "--data-dir", dir.path().to_str().unwrap()]);
        let config = cli.settings.resolve().unwrap();
        drop(open_store(&config).unwrap());
        let mode = std::fs::metadata(dir.path().join(DB_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

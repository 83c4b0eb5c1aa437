//! The `enlace-relay` command: parse settings, open storage, run until
//! SIGINT or SIGTERM.

use std::fs::DirBuilder;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use enlace_protocol::address::RelayAddress;
use tracing_subscriber::EnvFilter;

use crate::config::{Backend, Cli, Command, Config};
use crate::identity::Identity;
use crate::store::Store;

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

fn run(cli: Cli) -> Result<(), String> {
    let config = cli.settings.resolve().map_err(|e| e.to_string())?;
    if let Some(Command::Address) = cli.command {
        let identity = Identity::load(&config.data_dir).map_err(|e| {
            format!("{e} (is --data-dir right? the relay creates its identity on first start)")
        })?;
        let port = config.public_port.unwrap_or(config.listen.port());
        let address = RelayAddress::new(
            identity.fingerprint(),
            &config.address_host(&config.listen),
            port,
        )
        .map_err(|e| format!("{e} (check --public-host)"))?;
        println!("{address}");
        return Ok(());
    }
    create_private_dir(&config.data_dir)?;
    let identity = Identity::load_or_create(&config.data_dir).map_err(|e| e.to_string())?;
    let store = open_store(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(config, store, identity))
}

async fn serve(config: Config, store: Arc<dyn Store>, identity: Identity) -> Result<(), String> {
    let limits = config.limits;
    crate::server::run(
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
    .await
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))
}

fn open_store(config: &Config) -> Result<Arc<dyn Store>, String> {
    let dir = &config.data_dir;
    match config.backend {
        Backend::Redb => {
            let path = dir.join(DB_NAME);
            let store = crate::store::redb::RedbStore::open(&path).map_err(|e| match e {
                crate::store::StoreError::Corrupt(_) => format!(
                    "cannot open {}: {e}; restore it from a backup, or move it aside to start with an empty store",
                    path.display()
                ),
                _ => format!("cannot open {}: {e}", path.display()),
            })?;
            // Mailbox ids, recipient and delivery keys live here: owner only,
            // even in a data directory that others may enter.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "sled")]
        Backend::Sled => {
            let path = dir.join(SLED_DB_NAME);
            tracing::warn!("sled backend: stored envelopes may be lost on power failure");
            let store = crate::store::sled::SledStore::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "sled"))]
        Backend::Sled => Err("this build has no sled backend".into()),
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

//! The `enlace-relay` command: parse settings, open storage, run until
//! SIGINT or SIGTERM.

use std::fs::DirBuilder;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
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
    crate::server::run(config, store, identity, shutdown_signal(), |running| {
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
    })
    .await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("no SIGTERM handler ({e}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
            let store = crate::store::redb::RedbStore::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
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

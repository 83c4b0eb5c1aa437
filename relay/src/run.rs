//! One relay, wired: the endpoint, the writer, the forwarding half, the
//! server and the metrics endpoint, started in order and shut down in
//! order. The binary ([`crate::cli`]) and in-process tools call [`run`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use enlace_protocol::address::RelayAddress;
use enlace_quic::config::SetupError;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::forward::{Forwarder, Policy};
use crate::identity::Identity;
use crate::logic::Core;
use crate::metrics::Metrics;
use crate::policy::destinations::private_policy;
use crate::server::{Parts, Server, server_config};
use crate::store::Store;
use crate::store::writer::Writer;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The QUIC/TLS configuration could not be made.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on UDP {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound address could not be read.
    #[error(transparent)]
    LocalAddr(std::io::Error),
    /// The address to print does not make a relay address.
    #[error(transparent)]
    Address(#[from] ConfigError),
    /// The writer thread could not be started.
    #[error("cannot start writer: {0}")]
    Writer(#[source] std::io::Error),
    /// The metrics endpoint could not be bound.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running relay, for the binary and for in-process tools.
#[derive(Debug)]
pub struct Running {
    /// The address clients paste.
    pub address: RelayAddress,
    /// The bound UDP address.
    pub local_addr: SocketAddr,
}

/// Runs the relay until `stop` resolves, then shuts down cleanly.
/// `on_ready` is called once with the address, after the socket is bound.
pub async fn run(
    config: Config,
    store: Arc<dyn Store>,
    identity: Identity,
    stop: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Running),
) -> Result<(), RunError> {
    let endpoint = quinn::Endpoint::server(
        server_config(&identity, config.idle_timeout_secs)?,
        config.listen,
    )
    .map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;
    let local_addr = endpoint.local_addr().map_err(RunError::LocalAddr)?;
    let address = config.relay_address(identity.fingerprint(), &local_addr)?;

    let metrics = Arc::new(Metrics::default());
    let writer = Writer::spawn(store.clone()).map_err(RunError::Writer)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let clock = Clock::new(config.clock_offset_secs);
    let (allow_private, why) = private_policy(
        config.forward_allow_private,
        config.public_host.as_deref(),
        config.listen.ip(),
    );
    let public_ip = config.public_host.as_deref().and_then(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
    });
    let decision = if allow_private { "allowed" } else { "refused" };
    tracing::info!("forwarding to private addresses: {decision} ({why})");
    let forwarder = Arc::new(Forwarder::new(
        endpoint.clone(),
        writer.clone(),
        store.clone(),
        clock,
        Policy {
            ttl_secs: config.limits.ttl_secs,
            allow_private,
            own: [Some(local_addr.ip()), public_ip]
                .into_iter()
                .flatten()
                .filter(|ip| !ip.is_unspecified())
                .collect(),
        },
        shutdown_rx.clone(),
        metrics.clone(),
    ));
    let server = Server::new(
        &config,
        Parts {
            core: Core::new(store.clone(), config.limits).with_identity(Arc::new(identity)),
            writer,
            relays: forwarder.clone(),
            metrics: metrics.clone(),
            clock,
            shutdown: shutdown_rx.clone(),
        },
    );

    if let Some(addr) = config.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
        tracing::info!("metrics on http://{addr}/metrics");
        tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            store.clone(),
            shutdown_rx,
        ));
    }
    let sweeper = server.spawn_sweeps(config.sweep_interval_secs);
    forwarder.resume();

    let running = Running {
        address,
        local_addr,
    };
    on_ready(&running);

    server.serve(endpoint, stop, shutdown_tx, sweeper).await;
    Ok(())
}

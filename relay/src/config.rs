//! Settings: command-line flags, an optional TOML file (`--config`), and
//! defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use enlace_protocol::address::RelayAddress;
use enlace_protocol::keys::Fingerprint;
use serde::Deserialize;

use crate::logic::Limits;
use crate::logic::limits::{
    DEFAULT_FORWARD_QUEUE_LIMIT, DEFAULT_QUOTA, DEFAULT_TTL_SECS, FIRST_CONTACT_LIMIT,
};
use crate::policy::hosts::{
    DEFAULT_HOST_FAILED_CHECK_REFILL_SECS, DEFAULT_HOST_FAILED_CHECKS,
    DEFAULT_HOST_NEW_CONNECTIONS, DEFAULT_HOST_NEW_CONNECTIONS_PER_SEC, HostPolicy,
};

/// Default UDP listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4433";
/// Connections from one IP address: enough for a household or office behind
/// one NAT, few enough that one host cannot take all connection slots.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 64;
/// Connections in total (each idle one costs tens of KiB).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Seconds without packets before a connection is dropped (clients send
/// keep-alives more often than this).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Seconds between TTL sweeps.
pub const DEFAULT_SWEEP_INTERVAL_SECS: u64 = 60;

/// Enlace relay: stores and forwards end-to-end encrypted envelopes for the
/// organizers of a nucleus.
///
/// With no arguments it creates its data directory and identity on first
/// start, listens on UDP 0.0.0.0:4433 and prints its address
/// (`enlace://<fingerprint>@host:port`) on standard output. Logs go to
/// standard error; set RUST_LOG (e.g. `RUST_LOG=debug`) for more.
#[derive(Debug, Parser)]
#[command(name = "enlace-relay", version)]
pub struct Cli {
    /// Subcommand (default: run the relay).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the address of the relay whose data directory is given (the
    /// identity must exist: run the relay once first).
    Address,
}

/// Every setting; each may also be set in the TOML file under the same name
/// with `-` written as `_`.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings (flags override it). See contrib/relay.toml.
    #[arg(long, global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory for the identity (key 0600, certificate) and the database.
    /// Default: $XDG_DATA_HOME/enlace-relay or ~/.local/share/enlace-relay.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// UDP address to listen on. Default: 0.0.0.0:4433.
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Host name or IP clients use to reach this relay, printed in the
    /// address. Default: the listen IP, or 127.0.0.1 when listening on all
    /// interfaces (set this for a relay others use).
    #[arg(long, global = true)]
    pub public_host: Option<String>,
    /// Port printed in the address, when it differs from the listen port
    /// (port forwarding). Default: the port listened on.
    #[arg(long, global = true)]
    pub public_port: Option<u16>,
    /// Envelopes one mailbox may hold; senders past it get a quota error.
    /// Default: 128.
    #[arg(long)]
    pub quota: Option<u32>,
    /// Seconds an envelope is kept after it arrived, and a forward to
    /// another relay is retried. Default: 1814400 (21 days).
    #[arg(long)]
    pub ttl_secs: Option<u64>,
    /// Forwards this relay queues for one unreachable destination relay;
    /// clients past it get a "forward queue full" error. Default: 4096.
    #[arg(long)]
    pub forward_queue_limit: Option<u32>,
    /// Forward to (and fetch keys from) relays at loopback, private,
    /// link-local and other non-public addresses even though this relay's
    /// own address is public. Default: off (on by itself when
    /// --public-host is such an IP, or with no --public-host when --listen
    /// names such an IP, so relays on one machine or LAN federate; a relay
    /// listening on all interfaces counts as public).
    #[arg(long)]
    #[serde(default)]
    pub forward_allow_private: bool,
    /// Seconds between sweeps that delete expired envelopes. Default: 60.
    #[arg(long)]
    pub sweep_interval_secs: Option<u64>,
    /// Unsigned first-contact envelopes an unsecured mailbox accepts. Default: 8.
    #[arg(long)]
    pub first_contact_limit: Option<u32>,
    /// Concurrent connections from one IPv4 address or IPv6 /64. Default: 64.
    #[arg(long)]
    pub max_connections_per_ip: Option<u32>,
    /// Concurrent connections in total. Default: 10000.
    #[arg(long)]
    pub max_connections: Option<u32>,
    /// New connections one IPv4 address or IPv6 /64 may open in a burst;
    /// past half of it, an address not validated by a QUIC Retry gets a
    /// Retry first, and past all of it new connections are refused until
    /// the burst refills. Default: 64, or --max-connections-per-ip if
    /// higher.
    #[arg(long)]
    pub new_connections_per_ip: Option<u32>,
    /// New connections per second that refill --new-connections-per-ip.
    /// Default: 20.
    #[arg(long)]
    pub new_connections_per_ip_per_sec: Option<u32>,
    /// Failed signature checks the connections of one IPv4 address or IPv6
    /// /64 may make in a burst; then the failing connection is closed (code
    /// 3), and so is each later connection from there at its first failure
    /// until more are earned (connections that fail nothing go on).
    /// Default: 64.
    #[arg(long)]
    pub failed_checks_per_ip: Option<u32>,
    /// Seconds to earn one more failed check for --failed-checks-per-ip.
    /// Default: 10.
    #[arg(long)]
    pub failed_check_refill_secs: Option<u64>,
    /// Seconds of silence before a connection is closed. Default: 60.
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Serve Prometheus metrics over HTTP on this loopback address (e.g.
    /// 127.0.0.1:9464). Default: off. Non-loopback addresses are refused.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Storage backend: `redb` (default, durable) or `sled` (only in builds
    /// with the `sled` feature; not crash-durable, see docs/storage.md).
    #[arg(long)]
    pub backend: Option<String>,
    /// Testing only: shift the relay's clock by this many seconds (e.g. to
    /// check TTL expiry without waiting 21 days).
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub clock_offset_secs: Option<i64>,
}

/// Storage backend choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// redb (default).
    Redb,
    /// sled (feature `sled`).
    Sled,
}

/// Resolved settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// UDP listen address.
    pub listen: SocketAddr,
    /// Host printed in the address.
    pub public_host: Option<String>,
    /// Port printed in the address.
    pub public_port: Option<u16>,
    /// Core limits.
    pub limits: Limits,
    /// TTL sweep interval.
    pub sweep_interval_secs: u64,
    /// Connections per IP.
    pub max_connections_per_ip: u32,
    /// Connections in total.
    pub max_connections: u32,
    /// Failed checks and new connections per host.
    pub hosts: HostPolicy,
    /// Idle timeout.
    pub idle_timeout_secs: u64,
    /// Metrics address.
    pub metrics: Option<SocketAddr>,
    /// Storage backend.
    pub backend: Backend,
    /// Clock shift for tests.
    pub clock_offset_secs: i64,
    /// Forward to private ranges even with a public address.
    pub forward_allow_private: bool,
}

/// A settings error: one line saying which setting is wrong and how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: toml::de::Error,
    },
    /// [`DEFAULT_LISTEN`] does not parse.
    #[error("bad default listen address")]
    DefaultListen,
    /// `--backend sled` in a build without it.
    #[error("backend `sled` needs a build with `--features sled`")]
    NoSled,
    /// A backend name that is neither `redb` nor `sled`.
    #[error("unknown backend `{0}`: use `redb` or `sled`")]
    UnknownBackend(String),
    /// A metrics address that is not loopback.
    #[error(
        "metrics address {0} is not loopback: metrics reveal activity and are served on 127.0.0.1 or ::1 only"
    )]
    MetricsNotLoopback(SocketAddr),
    /// A quota, TTL or forward queue limit of 0.
    #[error("quota, ttl-secs and forward-queue-limit must be at least 1")]
    ZeroLimit,
    /// Per-host limits out of range.
    #[error(
        "failed-checks-per-ip and failed-check-refill-secs must be at least 1, new-connections-per-ip at least 2 (half is kept for validated addresses), new-connections-per-ip-per-sec 1 to 1000"
    )]
    HostLimits,
    /// The public host (or the listen address) does not make a relay
    /// address.
    #[error("{0} (check --public-host)")]
    PublicAddress(#[source] enlace_protocol::Error),
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("enlace-relay");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return Path::new(&home).join(".local/share/enlace-relay");
    }
    PathBuf::from("enlace-relay-data")
}

impl Settings {
    /// Merges flags over the config file over defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<Settings>(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => Settings::default(),
        };
        macro_rules! pick {
            ($field:ident) => {
                self.$field.or(file.$field)
            };
        }
        let listen = match pick!(listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::DefaultListen)?,
        };
        let backend = match pick!(backend).as_deref() {
            None | Some("redb") => Backend::Redb,
            Some("sled") if cfg!(feature = "sled") => Backend::Sled,
            Some("sled") => return Err(ConfigError::NoSled),
            Some(other) => return Err(ConfigError::UnknownBackend(other.to_owned())),
        };
        let metrics = pick!(metrics);
        if let Some(m) = metrics
            && !m.ip().is_loopback()
        {
            return Err(ConfigError::MetricsNotLoopback(m));
        }
        let limits = Limits {
            quota: pick!(quota).unwrap_or(DEFAULT_QUOTA),
            ttl_secs: pick!(ttl_secs).unwrap_or(DEFAULT_TTL_SECS),
            first_contact_limit: pick!(first_contact_limit).unwrap_or(FIRST_CONTACT_LIMIT),
            forward_queue_limit: pick!(forward_queue_limit).unwrap_or(DEFAULT_FORWARD_QUEUE_LIMIT),
        };
        if limits.quota == 0 || limits.ttl_secs == 0 || limits.forward_queue_limit == 0 {
            return Err(ConfigError::ZeroLimit);
        }
        let max_connections_per_ip =
            pick!(max_connections_per_ip).unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP);
        let per_sec =
            pick!(new_connections_per_ip_per_sec).unwrap_or(DEFAULT_HOST_NEW_CONNECTIONS_PER_SEC);
        let hosts = HostPolicy {
            failed_checks: pick!(failed_checks_per_ip).unwrap_or(DEFAULT_HOST_FAILED_CHECKS),
            failed_check_refill_ms: pick!(failed_check_refill_secs)
                .unwrap_or(DEFAULT_HOST_FAILED_CHECK_REFILL_SECS)
                .saturating_mul(1000),
            // A host allowed more concurrent connections may open them.
            new_connections: pick!(new_connections_per_ip)
                .unwrap_or(max_connections_per_ip.max(DEFAULT_HOST_NEW_CONNECTIONS)),
            new_connection_refill_ms: 1000 / u64::from(per_sec.max(1)),
        };
        if hosts.failed_checks == 0
            || hosts.failed_check_refill_ms == 0
            || hosts.new_connections < 2
            || per_sec == 0
            || per_sec > 1000
        {
            return Err(ConfigError::HostLimits);
        }
        let config = Config {
            data_dir: pick!(data_dir).unwrap_or_else(default_data_dir),
            listen,
            public_host: pick!(public_host),
            public_port: pick!(public_port),
            limits,
            sweep_interval_secs: pick!(sweep_interval_secs)
                .unwrap_or(DEFAULT_SWEEP_INTERVAL_SECS)
                .max(1),
            max_connections_per_ip,
            max_connections: pick!(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            hosts,
            idle_timeout_secs: pick!(idle_timeout_secs)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS)
                .clamp(1, 3600),
            metrics,
            backend,
            clock_offset_secs: pick!(clock_offset_secs).unwrap_or(0),
            forward_allow_private: self.forward_allow_private || file.forward_allow_private,
        };
        Ok(config)
    }
}

impl Config {
    /// The address clients paste for a relay with `fingerprint` bound to
    /// `bound`: the public host and port if set.
    pub fn relay_address(
        &self,
        fingerprint: Fingerprint,
        bound: &SocketAddr,
    ) -> Result<RelayAddress, ConfigError> {
        let port = self.public_port.unwrap_or(bound.port());
        RelayAddress::new(fingerprint, &self.address_host(bound), port)
            .map_err(ConfigError::PublicAddress)
    }

    /// The host printed in the address for a relay bound to `bound`.
    pub fn address_host(&self, bound: &SocketAddr) -> String {
        if let Some(h) = &self.public_host {
            return h.clone();
        }
        match bound.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "quota = 7\nttl_secs = 60\nlisten = \"127.0.0.1:5000\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "enlace-relay",
            "--config",
            path.to_str().unwrap(),
            "--quota",
            "9",
        ]);
        let c = cli.settings.resolve().unwrap();
        assert_eq!(c.limits.quota, 9);
        assert_eq!(c.limits.ttl_secs, 60);
        assert_eq!(c.listen.port(), 5000);
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let cli = Cli::parse_from(["enlace-relay", "--config", path.to_str().unwrap()]);
        assert!(cli.settings.resolve().is_err());
    }

    #[test]
    fn example_config_in_contrib_is_valid() {
        let text = include_str!("../../contrib/relay.toml");
        let file: Settings = toml::from_str(text).unwrap();
        let c = file.resolve().unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.hosts, HostPolicy::default());
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/enlace-relay"));
        assert_eq!(c.backend, Backend::Redb);
    }

    #[test]
    fn per_host_limits_from_flags() {
        let resolve = |args: &[&str]| {
            Cli::parse_from(std::iter::once("enlace-relay").chain(args.iter().copied()))
                .settings
                .resolve()
        };
        let c = resolve(&[
            "--failed-checks-per-ip",
            "5",
            "--failed-check-refill-secs",
            "2",
            "--new-connections-per-ip",
            "9",
            "--new-connections-per-ip-per-sec",
            "4",
        ])
        .unwrap();
        assert_eq!(
            c.hosts,
            HostPolicy {
                failed_checks: 5,
                failed_check_refill_ms: 2000,
                new_connections: 9,
                new_connection_refill_ms: 250,
            }
        );
        // A host allowed more concurrent connections may open them at once.
        let c = resolve(&["--max-connections-per-ip", "5000"]).unwrap();
        assert_eq!(c.hosts.new_connections, 5000);
        assert!(resolve(&["--new-connections-per-ip-per-sec", "0"]).is_err());
        assert!(resolve(&["--failed-checks-per-ip", "0"]).is_err());
    }

    #[test]
    fn metrics_must_be_loopback() {
        let cli = Cli::parse_from(["enlace-relay", "--metrics", "0.0.0.0:9464"]);
        assert!(cli.settings.resolve().is_err());
        let cli = Cli::parse_from(["enlace-relay", "--metrics", "127.0.0.1:9464"]);
        assert!(cli.settings.resolve().is_ok());
    }
}

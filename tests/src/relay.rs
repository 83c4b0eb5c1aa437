//! A real `enlace-relay` process on 127.0.0.1: started on an ephemeral
//! port (its address read from the one line it prints), stopped with
//! `kill -9` or a signal, restarted on the same data directory and port.
//! Its standard error, the log, is appended to `<data dir>.log`, where
//! tests read it.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use enlace_protocol::address::RelayAddress;
use enlace_quic::RelayConnection;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::{WAIT, binary};

/// Arguments added to every relay the tests start, split on whitespace:
/// `ENLACE_E2E_RELAY_ARGS="--backend sled"` runs the suites against the
/// sled store.
const ARGS_VAR: &str = "ENLACE_E2E_RELAY_ARGS";

/// How to start a relay: its data directory, extra arguments, log level
/// and metrics endpoint. [`RelayCommand::start`] runs it.
#[derive(Clone, Debug)]
pub struct RelayCommand {
    data_dir: PathBuf,
    /// 0 until the relay has printed its address, then that address's
    /// port, so a restart listens where clients already point (with
    /// `--public-port`, which no test uses, that would not be the port it
    /// listened on).
    port: u16,
    args: Vec<String>,
    debug_log: bool,
    metrics_port: Option<u16>,
}

/// What a spawned relay process hands back before it is known to be up.
struct Spawned {
    child: Child,
    /// Kept open so the relay never writes to a closed pipe.
    stdout: BufReader<ChildStdout>,
    /// Where this run's lines begin in the (appended) log.
    log_from: u64,
}

/// A relay that exited without printing its address.
#[derive(Debug)]
pub struct Refusal {
    /// How it exited.
    pub status: ExitStatus,
    /// What this run wrote to its standard error.
    pub log: String,
}

impl RelayCommand {
    /// A relay with data in `data_dir`, listening on an ephemeral port of
    /// 127.0.0.1, logging at the relay's default level.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            port: 0,
            args: Vec::new(),
            debug_log: false,
            metrics_port: None,
        }
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Logs at debug level (`RUST_LOG=debug`), for tests that read what
    /// the relay logs about its peers.
    pub fn debug_log(mut self) -> Self {
        self.debug_log = true;
        self
    }

    /// Serves metrics on a free loopback TCP port ([`Relay::metrics`]).
    pub fn metrics(mut self) -> Self {
        self.metrics_port = Some(free_tcp_port());
        self
    }

    /// Starts the relay and waits for its address; fails the test, with
    /// the relay's log, if it exits instead.
    pub async fn start(self) -> Relay {
        let dir = self.data_dir.display().to_string();
        match self.try_start().await {
            Ok(relay) => relay,
            Err(Refusal { status, log }) => {
                panic!("the relay on {dir} did not start ({status}); log:\n{log}")
            }
        }
    }

    /// Starts the relay: its address, or how it exited without one (a
    /// relay that refuses its data directory, say).
    pub async fn try_start(mut self) -> Result<Relay, Refusal> {
        let Spawned {
            mut child,
            mut stdout,
            log_from,
        } = self.spawn();
        let mut line = String::new();
        match tokio::time::timeout(WAIT, stdout.read_line(&mut line)).await {
            Err(_) => panic!(
                "the relay on {} neither printed its address nor exited within {WAIT:?}; log:\n{}",
                self.data_dir.display(),
                self.log_since(log_from)
            ),
            Ok(Err(e)) => panic!("cannot read the relay's standard output: {e}"),
            Ok(Ok(0)) => {
                let status = tokio::time::timeout(WAIT, child.wait())
                    .await
                    .expect("the relay closed its standard output but did not exit")
                    .unwrap();
                return Err(Refusal {
                    status,
                    log: self.log_since(log_from),
                });
            }
            Ok(Ok(_)) => {}
        }
        let address: RelayAddress = line
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("the relay printed {line:?}, not an address: {e}"));
        self.port = address.port();
        Ok(Relay {
            command: self,
            address,
            process: Some(Process {
                child,
                _stdout: stdout,
            }),
        })
    }

    /// Starts the relay and kills it (`kill -9`) `after` that long,
    /// whatever it is doing then (opening or recovering its store,
    /// binding, serving).
    pub async fn kill_9_after(&self, after: Duration) {
        let Spawned {
            mut child,
            stdout: _stdout,
            ..
        } = self.spawn();
        tokio::time::sleep(after).await;
        child.kill().await.unwrap();
    }

    fn log(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// What the log holds from byte `from` on.
    fn log_since(&self, from: u64) -> String {
        let bytes = std::fs::read(self.log()).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
    }

    fn spawn(&self) -> Spawned {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let log_from = log.metadata().unwrap().len();
        let mut command = Command::new(binary("enlace-relay"));
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.args);
        if let Some(port) = self.metrics_port {
            command.args(["--metrics", &format!("127.0.0.1:{port}")]);
        }
        command.args(
            std::env::var(ARGS_VAR)
                .unwrap_or_default()
                .split_whitespace(),
        );
        if self.debug_log {
            command.env("RUST_LOG", "debug");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Spawned {
            child,
            stdout,
            log_from,
        }
    }
}

/// A relay process the test started; killed (`kill -9`) when dropped.
#[derive(Debug)]
pub struct Relay {
    command: RelayCommand,
    address: RelayAddress,
    /// `None` once killed or exited: [`Relay::restart`] brings it back.
    process: Option<Process>,
}

#[derive(Debug)]
struct Process {
    child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl Relay {
    /// Starts a relay on `data_dir` with extra `args`
    /// ([`RelayCommand`] for more settings).
    pub async fn start(data_dir: &Path, args: &[&str]) -> Self {
        RelayCommand::new(data_dir).args(args).start().await
    }

    /// The address it printed: `enlace://<fingerprint>@127.0.0.1:<port>`.
    pub fn address(&self) -> &RelayAddress {
        &self.address
    }

    /// Its UDP socket on 127.0.0.1, for raw QUIC and proxies.
    pub fn socket_addr(&self) -> SocketAddr {
        (Ipv4Addr::LOCALHOST, self.address.port()).into()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.command.data_dir
    }

    /// Its log file: the standard error of every run on this data
    /// directory, appended.
    pub fn log(&self) -> PathBuf {
        self.command.log()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.command.log_since(0)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.running().child.id().expect("the relay has exited")
    }

    /// A verified connection, past hello.
    pub async fn connect(&self) -> RelayConnection {
        RelayConnection::connect(&self.address).await.unwrap()
    }

    /// Its metrics now (started with [`RelayCommand::metrics`]).
    pub async fn metrics(&self) -> Metrics {
        let port = self
            .command
            .metrics_port
            .expect("the relay was started without RelayCommand::metrics");
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        Metrics(text)
    }

    /// Sends `signal` (SIGTERM and SIGINT stop it cleanly); see
    /// [`Relay::wait`].
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid().try_into().unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the process to exit (within [`WAIT`]).
    pub async fn wait(&mut self) -> ExitStatus {
        let mut process = self.process.take().expect("the relay is not running");
        tokio::time::timeout(WAIT, process.child.wait())
            .await
            .expect("the relay did not exit")
            .unwrap()
    }

    /// SIGTERM, and the relay must exit cleanly.
    pub async fn stop(&mut self) {
        self.signal(Signal::TERM);
        let status = self.wait().await;
        assert!(status.success(), "the relay exited with {status}");
    }

    /// `kill -9`: no chance to flush or say goodbye. Returns once the
    /// process is gone.
    pub async fn kill_9(&mut self) {
        let mut process = self.process.take().expect("the relay is not running");
        process.child.kill().await.unwrap();
    }

    /// Starts it again, stopped or killed, on the same data directory,
    /// port and settings. The address it prints becomes
    /// [`Relay::address`] (the same unless the relay lost its key).
    pub async fn restart(&mut self) {
        assert!(
            self.process.is_none(),
            "restart of a running relay: stop or kill it first"
        );
        let Relay {
            address, process, ..
        } = self.command.clone().start().await;
        self.address = address;
        self.process = process;
    }

    /// Whether it was started and not yet killed or seen to exit.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Fails the test if the relay has exited or logged a panic.
    pub fn assert_alive(&mut self) {
        let process = self.process.as_mut().expect("the relay is not running");
        assert!(
            process.child.try_wait().unwrap().is_none(),
            "the relay exited"
        );
        let log = self.log_text();
        assert!(!log.contains("panicked"), "the relay panicked:\n{log}");
    }

    fn running(&self) -> &Process {
        self.process.as_ref().expect("the relay is not running")
    }
}

/// A [`Relay`] for tests without an async runtime of their own: the CLI
/// tests, whose `enlace` runs (the in-process
/// [`enlace_client::main_with`] among them) start runtimes themselves. The
/// relay is driven by a small runtime this value owns.
#[derive(Debug)]
pub struct BlockingRelay {
    // Dropped before the runtime it was started on.
    relay: Relay,
    runtime: tokio::runtime::Runtime,
}

impl BlockingRelay {
    /// Starts a relay on `data_dir` with default settings.
    pub fn start(data_dir: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let relay = runtime.block_on(Relay::start(data_dir, &[]));
        Self { relay, runtime }
    }

    /// See [`Relay::address`].
    pub fn address(&self) -> &RelayAddress {
        self.relay.address()
    }

    /// See [`Relay::kill_9`].
    pub fn kill_9(&mut self) {
        self.runtime.block_on(self.relay.kill_9());
    }

    /// See [`Relay::restart`].
    pub fn restart(&mut self) {
        self.runtime.block_on(self.relay.restart());
    }
}

/// The text a relay's metrics endpoint served.
#[derive(Clone, Debug)]
pub struct Metrics(String);

impl Metrics {
    /// The value of the metric line `name` (labels included), if present.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A loopback TCP port nothing listens on now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! The client makes no core file and is not dumpable: a running `enlace
//! listen` says so, the kernel's `/proc/PID/limits` says so, and a core
//! dump forced with SIGQUIT (what Ctrl-\ sends; the default action of
//! SIGQUIT is to dump core) leaves no core, even after the core limit is
//! raised from outside (`prlimit`), where an ordinary process beside it
//! does dump one. (Not SIGSEGV: Rust's stack-overflow handler takes the
//! first one sent with `kill`.)

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use enlace_tests::WAIT;
use enlace_tests::home::Home;
use enlace_tests::relay::BlockingRelay;
use rustix::process::{Pid, Resource, Rlimit, Signal, kill_process, prlimit};
use serde_json::Value;

const UNLIMITED: Rlimit = Rlimit {
    current: None,
    maximum: None,
};

/// The "Max core file size" line of /proc/PID/limits: (soft, hard).
fn core_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[4].to_owned(), fields[5].to_owned())
}

fn cores_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("core"))
        .collect()
}

#[test]
fn listen_is_not_dumpable_and_a_crash_leaves_no_core() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    // Where a core file would land (core_pattern "core" puts it in the
    // working directory of the process).
    let (cwd, control_cwd) = (tmp.path().join("cwd"), tmp.path().join("control"));
    std::fs::create_dir(&cwd).unwrap();
    std::fs::create_dir(&control_cwd).unwrap();

    let mut listen = ana
        .command(&["--json", "listen"])
        .current_dir(&cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = listen.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let listening = loop {
        let v = rx.recv_timeout(WAIT).expect("listen did not start");
        if v["event"] == "listening" {
            break v;
        }
    };
    // What the process says of itself (prctl, getrlimit) ...
    assert_eq!(listening["dumpable"], false, "{listening}");
    assert_eq!(listening["core_file_limit"], 0, "{listening}");
    // ... and what the kernel says of it.
    let pid = listen.id();
    assert_eq!(core_limits(pid), ("0".to_owned(), "0".to_owned()));

    // An ordinary process, its core limit raised from outside, dumps a
    // core on SIGQUIT (if this machine dumps cores at all).
    let mut control = Command::new("sleep")
        .arg("60")
        .current_dir(&control_cwd)
        .spawn()
        .unwrap();
    let control_pid = Pid::from_child(&control);
    let control_raised = prlimit(Some(control_pid), Resource::Core, UNLIMITED).is_ok();
    kill_process(control_pid, Signal::QUIT).unwrap();
    let control_status = control.wait().unwrap();
    let control_dumped = control_status.core_dumped();

    // The client's, raised the same way where this test may, dumps
    // nothing: it is not dumpable.
    let listen_pid = Pid::from_child(&listen);
    // Raising its hard limit of 0 needs CAP_SYS_RESOURCE, which the test
    // may not have (a container's root often lacks it): then only the
    // limit is checked below, not what being non-dumpable adds to it.
    let raising = prlimit(Some(listen_pid), Resource::Core, UNLIMITED);
    let raised = raising.is_ok();
    if raised {
        assert_eq!(core_limits(pid).0, "unlimited");
    }
    kill_process(listen_pid, Signal::QUIT).unwrap();
    let status = listen.wait().unwrap();
    assert_eq!(status.signal(), Some(3), "{status:?}");
    assert!(!status.core_dumped(), "the client dumped a core");
    assert!(cores_in(&cwd).is_empty(), "{:?}", cores_in(&cwd));
    println!(
        "enlace listen: dumpable false, core limit 0 0; core limit raised from outside: \
         {:?}; SIGQUIT: no core. An ordinary process beside it (limit raised: \
         {control_raised}): core dumped {control_dumped}, files {:?}",
        raising.map(|_| "yes"),
        cores_in(&control_cwd)
    );
}

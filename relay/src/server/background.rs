//! The nice-19 thread that runs the suspect lane's work.

use tokio::sync::oneshot;

/// A job for the [`Background`] thread.
type BackgroundJob = Box<dyn FnOnce() + Send>;

/// Niceness of the `Background` thread: the kernel gives it CPU time
/// only when the relay's other threads leave some (about 1.5 % of a core
/// against one busy thread at the default 0), so under a flood the checks
/// of suspect connections (an attacker's garbage: X25519
/// exchanges to open forwarded deliveries, failing Ed25519 checks) take
/// no time slices from other clients' requests.
pub const BACKGROUND_NICE: i32 = 19;

/// One thread, at [`BACKGROUND_NICE`], that runs the suspect lane's work.
/// The lane lets one job in at a time (`UNPROVEN_PERMITS`), so its queue
/// never holds more than that.
#[derive(Debug)]
pub(crate) struct Background {
    jobs: std::sync::mpsc::SyncSender<BackgroundJob>,
}

impl Background {
    /// Starts the thread. `None` if it cannot be started (said at warn
    /// level); the lane's work then runs on the runtime's threads, in the
    /// same order. `queue`: jobs waiting at most (the lane's permits).
    pub(crate) fn start(queue: usize) -> Option<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<BackgroundJob>(queue);
        let started = std::thread::Builder::new()
            .name("enlace-suspect".into())
            .spawn(move || {
                // Linux keeps a nice value per thread: this lowers only
                // this one. Failing that, it runs at the default.
                if let Err(e) = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    BACKGROUND_NICE,
                ) {
                    tracing::warn!("cannot lower the priority of the suspect-check thread: {e}");
                }
                while let Ok(job) = queue.recv() {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::warn!("cannot start the suspect-check thread, checking on the others: {e}");
            return None;
        }
        Some(Self { jobs })
    }

    /// Runs `work` on the thread and waits for its result; runs it here if
    /// the thread is gone. A panic in `work` is resumed here, where it
    /// ends the request's task as it would have without the thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = oneshot::channel();
        let job: BackgroundJob = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = tx.send(out);
        });
        if let Err(
            std::sync::mpsc::TrySendError::Full(job)
            | std::sync::mpsc::TrySendError::Disconnected(job),
        ) = self.jobs.try_send(job)
        {
            job();
        }
        match rx.await {
            Ok(Ok(out)) => out,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // The job is dropped only unrun with the thread, which runs
            // every job it receives.
            Err(_) => std::panic::panic_any("the suspect-check thread dropped a job"),
        }
    }
}

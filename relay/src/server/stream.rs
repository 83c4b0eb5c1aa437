//! One client stream (docs/protocol.md 7.3, 7.4): read a frame, pass the
//! request through the priority gate to the core, commit what it asks and
//! answer what [`crate::logic::Core::finish`] says, in request order. A
//! run of pipelined acks shares one commit; a subscription turns the
//! stream into the mailbox's delivery stream (it is a mode of the stream:
//! acks pipelined on it are handled by the same code as any request).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use enlace_protocol::DecodeError;
use enlace_protocol::command::{RelayError, Request, Response};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{MailboxId, MessageId};
use enlace_quic::frame::{FrameError, FrameStream};
use quinn::VarInt;

use super::flight::{FLUSH_GRACE, UnackedAnswers};
use super::shared::Shared;
use super::transport::{CONNECTION_RECEIVE_WINDOW, MAX_MALFORMED_STREAMS, codes, write};
use crate::logic::{ConnState, Effect, Step, Then, store_error};
use crate::metrics::Refusal;
use crate::shutdown::until_shutdown;
use crate::store::{Committed, WriteOp};

/// Deliveries pushed on one subscription and not yet acked: enough to keep
/// a mobile link busy, small enough that a recipient that never acks holds
/// at most this many sealed envelopes in flight.
pub const DELIVERY_WINDOW: usize = 32;
/// Acks already received on a stream that are queued for one commit at
/// most (see `StreamTask::acks`).
const ACK_RUN: usize = DELIVERY_WINDOW;

/// One stream's task: what it reads from and writes to, and what it owes
/// the shutdown accounting.
pub(crate) struct StreamTask {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<ConnState>,
    pub(crate) conn: quinn::Connection,
    pub(crate) malformed: Arc<AtomicU64>,
    /// The connection's receive window was raised to
    /// [`CONNECTION_RECEIVE_WINDOW`] (once a check passed).
    pub(crate) window_raised: Arc<AtomicBool>,
    /// The connection's place in the low-priority lane (see
    /// [`PriorityGate`]).
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
    pub(crate) send: quinn::SendStream,
    pub(crate) frames: FrameStream,
    /// Reset at shutdown with a delivery half written: nothing to flush.
    pub(crate) abandoned: bool,
    /// Whether an answer went out on this stream.
    pub(crate) answered: bool,
    /// `Stored` answers written on this stream.
    pub(crate) deposits_answered: u64,
}

/// The answer to one request of a run (see `StreamTask::acks`).
enum Answer<F> {
    /// Known now (a refusal).
    Now(Response),
    /// Once the queued write is committed.
    Later(Then, F),
}

/// What a decoded frame led to.
enum Handled {
    /// Answered; keep reading.
    Continue,
    /// The stream is done (error frame sent, or the peer is gone).
    Close,
    /// Start a subscription.
    Subscribe(MailboxId, DeliveryKey),
}

impl StreamTask {
    pub(crate) async fn run(mut self) {
        self.serve().await;
        if self.abandoned {
            // Reset at shutdown: deposit answers written here and not yet
            // acknowledged are cut off, and counted so (never released:
            // the relay is closing).
            self.shared
                .unacked
                .fetch_add(self.deposits_answered, Ordering::SeqCst);
            return;
        }
        // Ends the stream (a no-op if it already is) and waits until the
        // client has everything, so a shutdown that follows loses no answer.
        let _ = self.send.finish();
        let shared = self.shared.clone();
        let _unacked = UnackedAnswers::enter(&shared.unacked, self.deposits_answered);
        let stopped = self.send.stopped();
        tokio::pin!(stopped);
        if tokio::time::timeout(FLUSH_GRACE, &mut stopped)
            .await
            .is_ok()
        {
            return;
        }
        // FLUSH_GRACE bounds a client that never acknowledges. Once the
        // relay is shutting down, an answer's wait goes on to the end of the
        // relay's own grace period instead (closing the endpoint then ends
        // it), so no answer is cut off while that period runs.
        if !self.answered {
            return;
        }
        if self.shared.draining.load(Ordering::SeqCst) {
            let _ = stopped.await;
        } else {
            self.shared
                .flushes_given_up
                .fetch_add(self.deposits_answered, Ordering::Relaxed);
        }
    }

    async fn serve(&mut self) {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            if self.shared.draining.load(Ordering::SeqCst) {
                break;
            }
            let frame = tokio::select! {
                f = self.frames.next() => f,
                () = until_shutdown(&mut shutdown) => break,
            };
            // Boxed: handling a request (a commit, a forward) is a large
            // future, and every idle stream task would otherwise carry its
            // size for as long as the stream stays open.
            match Box::pin(self.on_frame(frame)).await {
                Handled::Continue => {}
                Handled::Close => return,
                Handled::Subscribe(id, key) => {
                    if !self.subscription(id, key).await {
                        return;
                    }
                }
            }
            // Frames pipelined on one stream are all in the receive buffer:
            // without a yield this task would handle them back to back (a
            // signature check each) while other connections wait.
            tokio::task::yield_now().await;
        }
        let _ = self.send.finish();
    }

    async fn malformed(&mut self, error: RelayError) -> Handled {
        self.shared.metrics.reject_error(&error);
        write(&mut self.send, &Response::Error(error)).await;
        let _ = self.send.finish();
        self.frames.stop(codes::STREAM_MALFORMED);
        let n = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= u64::from(MAX_MALFORMED_STREAMS) {
            self.conn
                .close(codes::PROTOCOL_VIOLATION, b"too many malformed streams");
        }
        Handled::Close
    }

    async fn on_frame(&mut self, frame: Result<Option<Vec<u8>>, FrameError>) -> Handled {
        let payload = match frame {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ = self.send.finish();
                return Handled::Close;
            }
            Err(FrameError::Decode(DecodeError::FrameTooLarge(_))) => {
                return self.malformed(RelayError::TooLarge).await;
            }
            Err(FrameError::Decode(_)) => return self.malformed(RelayError::Malformed).await,
            Err(_) => return Handled::Close,
        };
        let shared = self.shared.clone();
        let _guard = shared.in_flight.enter();
        let state = self.state.clone();
        let turn = self.turn.clone();
        let work = {
            let (shared, state) = (shared.clone(), state.clone());
            move || {
                let request = Request::decode(&payload)?;
                // Checked before the request's signature is: a connection
                // over its budget gets no further check.
                if state.over_budget() {
                    return Ok(None);
                }
                let is_ack = matches!(request, Request::Ack(_));
                let step = shared.core.handle(&state, request, shared.clock.now());
                Ok(Some((is_ack, step)))
            }
        };
        let decided = shared.gate.run(|| state.standing(), &turn, work).await;
        state.charge_host(shared.clock.now());
        self.raise_window_once_proven();
        let (is_ack, step) = match decided {
            Ok(Some(decided)) => decided,
            Ok(None) => {
                self.over_auth_budget();
                return Handled::Close;
            }
            Err(DecodeError::UnknownTag(_)) => {
                return self.malformed(RelayError::UnknownCommand).await;
            }
            Err(DecodeError::FrameTooLarge(_)) => {
                return self.malformed(RelayError::TooLarge).await;
            }
            Err(_) => return self.malformed(RelayError::Malformed).await,
        };
        let response = match step {
            Step::Reply(r) => r,
            Step::Write { op, then } if is_ack => return self.acks(op, then).await,
            Step::Write { op, then } => self.commit(op, then).await,
            Step::Subscribe {
                receive_id,
                delivery_key,
            } => {
                if !write(&mut self.send, &Response::Ok).await {
                    return Handled::Close;
                }
                return Handled::Subscribe(receive_id, delivery_key);
            }
            Step::FetchRelayKey { destination } => self.shared.relays.fetch_key(&destination).await,
        };
        if let Response::Error(e) = &response {
            self.shared.metrics.reject_error(e);
        }
        let written = write(&mut self.send, &response).await;
        if self.over_auth_budget() {
            return Handled::Close;
        }
        if written {
            self.answered = true;
            if matches!(response, Response::Stored) {
                self.deposits_answered += 1;
            }
            Handled::Continue
        } else {
            Handled::Close
        }
    }

    /// Answers a run of acks. A subscriber acks as deliveries arrive, so
    /// acks often wait on the stream back to back: every one already
    /// received is checked and queued before the first commit is awaited,
    /// so they share one commit instead of taking one each. Each is still
    /// its own command with its own signature and its own answer, in order.
    async fn acks(&mut self, op: WriteOp, then: Then) -> Handled {
        let shared = self.shared.clone();
        let mut answers = vec![self.queue(op, then).await];
        while answers.len() < ACK_RUN {
            // One signature check per scheduling turn, as between frames,
            // and none once the connection is over its budget.
            tokio::task::yield_now().await;
            if self.state.over_budget() {
                break;
            }
            let Some(frame) = self.frames.ready() else {
                break;
            };
            let ack = match frame {
                Ok(Some(payload)) => match Request::decode(&payload) {
                    Ok(r @ Request::Ack(_)) => r,
                    // Anything else is handled as usual once these are.
                    _ => {
                        self.frames.push_back(Ok(Some(payload)));
                        break;
                    }
                },
                other => {
                    self.frames.push_back(other);
                    break;
                }
            };
            let state = self.state.clone();
            let turn = self.turn.clone();
            let work = {
                let (shared, state) = (shared.clone(), state.clone());
                move || shared.core.handle(&state, ack, shared.clock.now())
            };
            let step = shared.gate.run(|| state.standing(), &turn, work).await;
            state.charge_host(shared.clock.now());
            answers.push(match step {
                Step::Write { op, then } => self.queue(op, then).await,
                Step::Reply(r) => Answer::Now(r),
                // An ack is answered or written, nothing else.
                _ => Answer::Now(Response::Error(RelayError::Internal)),
            });
        }
        for answer in answers {
            let response = match answer {
                Answer::Now(r) => r,
                Answer::Later(then, done) => self.committed(done.await, then).await,
            };
            if let Response::Error(e) = &response {
                shared.metrics.reject_error(e);
            }
            if !write(&mut self.send, &response).await {
                return Handled::Close;
            }
            self.answered = true;
        }
        if self.over_auth_budget() {
            return Handled::Close;
        }
        Handled::Continue
    }

    /// Gives the connection its full receive window the first time one of
    /// its checks has passed.
    fn raise_window_once_proven(&self) {
        if self.state.has_passed_a_check() && !self.window_raised.swap(true, Ordering::Relaxed) {
            self.conn
                .set_receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
        }
    }

    /// True, and the connection closed, once its requests have failed
    /// [`MAX_AUTH_FAILURES`] signature checks (counted by the core where
    /// they fail: see [`ConnState::failed_checks`]).
    fn over_auth_budget(&mut self) -> bool {
        if !self.state.over_budget() {
            return false;
        }
        if self.state.host_exhausted() {
            self.shared.metrics.reject(Refusal::HostFailedChecks);
        }
        let _ = self.send.finish();
        self.conn.close(
            codes::TOO_MANY_AUTH_FAILURES,
            b"too many failed signature checks",
        );
        true
    }

    /// Queues `op` for the next commit without waiting for it.
    async fn queue(
        &self,
        op: WriteOp,
        then: Then,
    ) -> Answer<impl Future<Output = Committed> + use<>> {
        match self.shared.writer.queue(op).await {
            Ok(done) => Answer::Later(then, done),
            Err(e) => Answer::Now(Response::Error(store_error(&e))),
        }
    }

    async fn commit(&self, op: WriteOp, then: Then) -> Response {
        let outcome = self.shared.writer.submit(op).await;
        self.committed(outcome, then).await
    }

    /// The answer to a write once committed: what
    /// [`crate::logic::Core::finish`] decides, with its effect carried out.
    async fn committed(&self, outcome: Committed, then: Then) -> Response {
        let finished = self.shared.core.finish(&self.state, then, outcome);
        let registry = &self.shared.registry;
        match finished.effect {
            None => {}
            Some(Effect::Deposited { receive_id }) => {
                self.shared.metrics.deposits.fetch_add(1, Ordering::Relaxed);
                registry.new_envelope(&receive_id);
            }
            Some(Effect::Acked {
                receive_id,
                message_id,
            }) => registry.acked(&receive_id, message_id),
            Some(Effect::Deleted { receive_id }) => registry.deleted(&receive_id),
            Some(Effect::AwaitForward(pending)) => {
                let record = self
                    .shared
                    .relays
                    .await_forward(pending.forward_id, pending.destination)
                    .await;
                return pending.answered(&self.state, record);
            }
        }
        finished.response
    }

    /// Pushes deliveries until the subscription ends. Returns true if the
    /// stream goes on as a plain request stream: after `SubscriptionEnded`
    /// the relay still answers requests (acks) the client already sent on
    /// it, until the client finishes the stream.
    async fn subscription(&mut self, id: MailboxId, key: DeliveryKey) -> bool {
        let shared = self.shared.clone();
        let sub = shared.registry.subscribe(id);
        let mut shutdown = shared.shutdown.clone();
        let mut in_flight: HashSet<MessageId> = HashSet::new();
        let mut cursor: Option<u64> = None;
        loop {
            let (ended, acked) = {
                let mut st = sub.lock();
                (st.ended, std::mem::take(&mut st.acked))
            };
            if let Some(reason) = ended {
                let ok = write(&mut self.send, &Response::SubscriptionEnded(reason)).await;
                shared.registry.unsubscribe(&id, &sub);
                return ok;
            }
            for m in acked {
                in_flight.remove(&m);
            }
            // One envelope is read and sealed at a time: a subscriber that
            // does not read blocks the write, and whatever was read ahead
            // would sit in memory (a window of large envelopes is 2 MiB per
            // stream, 64 MiB per connection).
            let mut room = DELIVERY_WINDOW.saturating_sub(in_flight.len());
            let mut failed = false;
            while room > 0 {
                let now = shared.clock.now();
                match shared.core.deliveries(&id, &key, cursor, now, 1) {
                    Ok(batch) => {
                        let Some(d) = batch.into_iter().next() else {
                            break;
                        };
                        // A subscriber that does not read must not hold up a
                        // shutdown: the half-written frame is abandoned with
                        // a reset (the envelope stays stored, unacked).
                        let deliver = Response::Deliver(d.sealed);
                        let written = tokio::select! {
                            ok = write(&mut self.send, &deliver) => Some(ok),
                            () = until_shutdown(&mut shutdown) => None,
                        };
                        let written = written.unwrap_or_else(|| {
                            let _ = self.send.reset(codes::SHUTDOWN);
                            self.abandoned = true;
                            false
                        });
                        if !written {
                            shared.registry.unsubscribe(&id, &sub);
                            return false;
                        }
                        shared.metrics.deliveries.fetch_add(1, Ordering::Relaxed);
                        in_flight.insert(d.message_id);
                        cursor = Some(d.seq);
                        room -= 1;
                    }
                    Err(e) => {
                        let err = store_error(&e);
                        tracing::error!("reading deliveries failed: {e}");
                        write(&mut self.send, &Response::Error(err)).await;
                        let _ = self.send.finish();
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                break;
            }
            if shared.draining.load(Ordering::SeqCst) {
                let _ = self.send.finish();
                break;
            }
            tokio::select! {
                () = sub.notify.notified() => {}
                frame = self.frames.next() => {
                    if let Ok(Some(payload)) = &frame {
                        // One subscription per stream.
                        if matches!(Request::decode(payload), Ok(Request::Subscribe(_))) {
                            self.malformed(RelayError::Malformed).await;
                            break;
                        }
                    }
                    match Box::pin(self.on_frame(frame)).await {
                        Handled::Continue => {}
                        Handled::Close | Handled::Subscribe(..) => break,
                    }
                }
                () = until_shutdown(&mut shutdown) => {
                    let _ = self.send.finish();
                    break;
                }
            }
        }
        shared.registry.unsubscribe(&id, &sub);
        false
    }
}

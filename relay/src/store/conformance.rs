//! Tests every backend must pass.

use enlace_protocol::command::ForwardId;
use enlace_protocol::envelope::{MailboxId, MessageId};
use enlace_protocol::keys::Fingerprint;

use super::forward::{Enqueue, QueueState};
use super::{MailboxRecord, Stats, Store, WriteOp, WriteOutcome};

fn record(send: u8) -> Box<MailboxRecord> {
    Box::new(MailboxRecord {
        send_id: MailboxId([send; 16]),
        recipient_key: [1; 32],
        sender_key: None,
        delivery_key: [2; 32],
        first_contact: 0,
        next_seq: 0,
        stored: 0,
    })
}

fn deposit(rid: u8, msg: u8, arrival: u64, key: Option<[u8; 32]>) -> WriteOp {
    WriteOp::Deposit {
        receive_id: MailboxId([rid; 16]),
        message_id: MessageId([msg; 16]),
        bytes: vec![msg; 100],
        arrival,
        verified_with: key,
        quota: 3,
        first_contact_limit: 2,
    }
}

/// Runs the whole suite against a store.
pub(crate) fn run(store: &dyn Store) {
    let rid = MailboxId([10; 16]);
    let create = WriteOp::Create {
        receive_id: rid,
        record: record(20),
    };
    assert_eq!(
        store.apply(&[create.clone(), create]).unwrap(),
        vec![WriteOutcome::Done, WriteOutcome::Collision]
    );
    assert_eq!(
        store.mailbox_by_send_id(&MailboxId([20; 16])).unwrap(),
        Some((rid, *record(20)))
    );
    assert!(store.mailbox(&MailboxId([11; 16])).unwrap().is_none());

    // First contact: two unsigned envelopes, then refused; duplicates
    // are answered without storing twice.
    let out = store
        .apply(&[
            deposit(10, 1, 100, None),
            deposit(10, 1, 100, None),
            deposit(10, 2, 100, None),
            deposit(10, 3, 100, None),
            deposit(99, 3, 100, None),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Stored { seq: 0 },
            WriteOutcome::Duplicate,
            WriteOutcome::Stored { seq: 1 },
            WriteOutcome::Refused,
            WriteOutcome::UnknownMailbox,
        ]
    );
    // Secure; an envelope checked against no key (stale) is refused,
    // one checked against the key is stored; then the quota holds.
    let key = [7; 32];
    let out = store
        .apply(&[
            WriteOp::Secure {
                receive_id: rid,
                sender_key: key,
            },
            WriteOp::Secure {
                receive_id: rid,
                sender_key: [8; 32],
            },
            deposit(10, 4, 100, None),
            deposit(10, 5, 200, Some(key)),
            deposit(10, 6, 200, Some(key)),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Done,
            WriteOutcome::Refused,
            WriteOutcome::Refused,
            WriteOutcome::Stored { seq: 2 },
            WriteOutcome::Quota,
        ]
    );
    let stats = store.stats().unwrap();
    assert_eq!((stats.mailboxes, stats.envelopes, stats.bytes), (1, 3, 300));

    let all = store.pending(&rid, None, 0, 10).unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(all[2].bytes, vec![5; 100]);
    assert_eq!(all[2].arrival, 200);
    assert_eq!(store.pending(&rid, Some(0), 0, 1).unwrap()[0].seq, 1);
    // Not-yet-swept expired envelopes are not delivered.
    assert_eq!(store.pending(&rid, None, 150, 1).unwrap()[0].seq, 2);

    // Ack deletes; acking again finds nothing.
    let ack = WriteOp::Ack {
        receive_id: rid,
        message_id: MessageId([1; 16]),
    };
    assert_eq!(
        store.apply(&[ack.clone(), ack]).unwrap(),
        vec![WriteOutcome::Done, WriteOutcome::NotFound]
    );
    assert_eq!(store.pending(&rid, None, 0, 10).unwrap().len(), 2);
    // An ack for a mailbox that does not exist (deleted since the
    // relay checked its signature) is refused, not answered as done.
    let stray = WriteOp::Ack {
        receive_id: MailboxId([0xee; 16]),
        message_id: MessageId([1; 16]),
    };
    assert_eq!(
        store.apply(&[stray]).unwrap(),
        vec![WriteOutcome::UnknownMailbox]
    );

    // Expiry removes what arrived before the cut-off, oldest first.
    assert_eq!(
        store
            .apply(&[WriteOp::Expire {
                before: 150,
                limit: 10
            }])
            .unwrap(),
        vec![WriteOutcome::Expired { count: 1 }]
    );
    assert_eq!(store.pending(&rid, None, 0, 10).unwrap()[0].seq, 2);
    assert_eq!(store.stats().unwrap().envelopes, 1);

    // Delete removes the mailbox, its envelopes and its send id.
    assert_eq!(
        store
            .apply(&[
                WriteOp::Delete { receive_id: rid },
                WriteOp::Delete { receive_id: rid }
            ])
            .unwrap(),
        vec![WriteOutcome::Done, WriteOutcome::UnknownMailbox]
    );
    assert!(store.mailbox(&rid).unwrap().is_none());
    assert!(
        store
            .mailbox_by_send_id(&MailboxId([20; 16]))
            .unwrap()
            .is_none()
    );
    assert_eq!(store.stats().unwrap(), Stats::default());
}

fn enqueue(id: u8, dest: u8, arrival: u64) -> WriteOp {
    WriteOp::ForwardEnqueue(Box::new(Enqueue {
        forward_id: ForwardId([id; 16]),
        destination_fp: Fingerprint([dest; 32]),
        destination: vec![dest; 40],
        sealed: vec![id; 300],
        arrival,
        deadline: arrival + 100,
        per_destination: 2,
        total: 3,
    }))
}

fn settle(id: u8, state: QueueState) -> WriteOp {
    WriteOp::ForwardSettle {
        forward_id: ForwardId([id; 16]),
        state,
        keep_until: 5000,
    }
}

/// The forward queue: order, limits, idempotency, settling, expiry.
pub(crate) fn forwards(store: &dyn Store) {
    let out = store
        .apply(&[
            enqueue(1, 0xd1, 10),
            enqueue(1, 0xd1, 10),
            enqueue(2, 0xd1, 11),
            enqueue(3, 0xd1, 12),
            enqueue(4, 0xd2, 13),
            enqueue(5, 0xd3, 14),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Stored { seq: 0 },
            WriteOutcome::Duplicate,
            WriteOutcome::Stored { seq: 1 },
            WriteOutcome::Quota,
            WriteOutcome::Stored { seq: 0 },
            WriteOutcome::Quota,
        ]
    );
    let q = store.forward_queue(&Fingerprint([0xd1; 32]), 10).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].forward_id, ForwardId([1; 16]));
    assert_eq!(q[0].destination, vec![0xd1; 40]);
    assert_eq!(q[0].sealed, vec![1; 300]);
    assert_eq!(q[1].seq, 1);
    // Reading on from a position skips what is before it.
    let rest = store
        .forward_queue_from(&Fingerprint([0xd1; 32]), 1, 10)
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].forward_id, ForwardId([2; 16]));
    assert!(
        store
            .forward_queue_from(&Fingerprint([0xd1; 32]), 2, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .forward_queue_from(&Fingerprint([0xd2; 32]), 1, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .forward_queue_from(&Fingerprint([0xd2; 32]), 0, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.forward_destinations(10).unwrap(),
        vec![Fingerprint([0xd1; 32]), Fingerprint([0xd2; 32])]
    );
    assert!(
        store
            .forward_status(&ForwardId([1; 16]))
            .unwrap()
            .unwrap()
            .is_queued()
    );
    assert!(store.forward_status(&ForwardId([3; 16])).unwrap().is_none());

    let out = store
        .apply(&[
            settle(1, QueueState::Stored),
            settle(1, QueueState::Stored),
            settle(2, QueueState::Refused(4)),
            enqueue(3, 0xd1, 20),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![
            WriteOutcome::Done,
            WriteOutcome::NotFound,
            WriteOutcome::Done,
            WriteOutcome::Stored { seq: 0 },
        ]
    );
    let s2 = store.forward_status(&ForwardId([2; 16])).unwrap().unwrap();
    assert_eq!(s2.state, QueueState::Refused(4));
    assert_eq!(
        store
            .forward_queue(&Fingerprint([0xd1; 32]), 10)
            .unwrap()
            .len(),
        1
    );

    // Forward 4 (deadline 113) expires; 3 (deadline 120) does not yet.
    assert_eq!(
        store
            .apply(&[WriteOp::ForwardExpire {
                now: 115,
                keep_until: 5000,
                limit: 100
            }])
            .unwrap(),
        vec![WriteOutcome::Expired { count: 1 }]
    );
    let s4 = store.forward_status(&ForwardId([4; 16])).unwrap().unwrap();
    assert_eq!(s4.state, QueueState::Expired);
    assert!(
        store
            .forward_queue(&Fingerprint([0xd2; 32]), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.forward_destinations(10).unwrap(),
        vec![Fingerprint([0xd1; 32])]
    );
    // Past every deadline and keep time: everything is forgotten.
    store
        .apply(&[WriteOp::ForwardExpire {
            now: 200,
            keep_until: 300,
            limit: 100,
        }])
        .unwrap();
    assert_eq!(
        store
            .forward_status(&ForwardId([3; 16]))
            .unwrap()
            .unwrap()
            .state,
        QueueState::Expired
    );
    store
        .apply(&[WriteOp::ForwardExpire {
            now: 8000,
            keep_until: 9000,
            limit: 100,
        }])
        .unwrap();
    for id in 1..=4 {
        assert!(
            store
                .forward_status(&ForwardId([id; 16]))
                .unwrap()
                .is_none()
        );
    }
    assert!(store.forward_destinations(10).unwrap().is_empty());
    // The total went back to zero: three more fit again.
    let out = store
        .apply(&[
            enqueue(7, 0xd1, 9000),
            enqueue(8, 0xd2, 9000),
            enqueue(9, 0xd3, 9000),
        ])
        .unwrap();
    assert!(out.iter().all(|o| matches!(o, WriteOutcome::Stored { .. })));
}

/// What was committed survives reopening.
pub(crate) fn persists(open: &dyn Fn() -> Box<dyn Store>) {
    let rid = MailboxId([10; 16]);
    {
        let store = open();
        store
            .apply(&[
                WriteOp::Create {
                    receive_id: rid,
                    record: record(20),
                },
                deposit(10, 1, 100, None),
            ])
            .unwrap();
    }
    let store = open();
    assert_eq!(store.pending(&rid, None, 0, 10).unwrap().len(), 1);
    assert_eq!(store.stats().unwrap().envelopes, 1);
}

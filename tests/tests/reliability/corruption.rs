//! Corruption: flip bytes in and truncate the relay's store file, restart.
//! The relay must either refuse to start with a one-line error naming the
//! file, or start and deliver only envelopes exactly as they were sent.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{Envelope, MessageId};
use enlace_quic::SubscriptionEvent;
use enlace_tests::env_or;
use enlace_tests::mailbox::{envelope, key, secured_mailbox};
use enlace_tests::relay::{Refusal, Relay, RelayCommand};

fn damage(file: &Path, round: u64) -> String {
    let mut bytes = std::fs::read(file).unwrap();
    let len = bytes.len();
    match round % 3 {
        0 => {
            // Flip bits at random places.
            let n = 1 + rand::random_range(0..16);
            for _ in 0..n {
                let at = rand::random_range(0..len);
                bytes[at] ^= 1 << rand::random_range(0..8);
            }
            std::fs::write(file, &bytes).unwrap();
            format!("{n} random bit flips")
        }
        1 => {
            // Flip a bit inside a stored envelope body (runs of 0x5a).
            let bodies: Vec<usize> = bytes
                .windows(64)
                .enumerate()
                .filter(|(_, w)| w.iter().all(|b| *b == 0x5a))
                .map(|(i, _)| i + 32)
                .step_by(64)
                .collect();
            let at = bodies[rand::random_range(0..bodies.len())];
            bytes[at] ^= 0x01;
            std::fs::write(file, &bytes).unwrap();
            "one bit flipped inside an envelope body".into()
        }
        _ => {
            let keep = rand::random_range(0..len);
            bytes.truncate(keep);
            std::fs::write(file, &bytes).unwrap();
            format!("truncated to {keep} of {len} bytes")
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_store_files_are_refused_by_name_or_never_deliver_altered_envelopes() {
    let rounds = env_or("ENLACE_CORRUPTION_ROUNDS", 12);
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let mut relay = Relay::start(&pristine, &[]).await;
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    let mut sent: HashMap<MessageId, Envelope> = HashMap::new();
    for _ in 0..40 {
        let env = envelope(&sender, mb.send_id);
        conn.send(&env).await.unwrap();
        sent.insert(env.message_id(), env);
    }
    conn.close().await;
    relay.stop().await;
    let dk = *mb.delivery_key.to_bytes();

    let (mut refused, mut started, mut withheld) = (0, 0, 0);
    for round in 0..rounds {
        let data = dir.path().join(format!("round{round}"));
        copy_dir(&pristine, &data);
        let db = data.join("mailboxes.redb");
        let what = damage(&db, round);
        match RelayCommand::new(&data).try_start().await {
            Err(Refusal { status, log: err }) => {
                assert!(!status.success());
                // Killed by a signal (a panic aborts too) would have no code.
                assert!(status.code().is_some(), "relay died: {status:?}");
                let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
                let last = lines.last().copied().unwrap_or_default();
                assert!(
                    last.contains(&db.display().to_string()),
                    "round {round} ({what}): the error does not name the file:\n{err}"
                );
                if refused == 0 {
                    println!("CORRUPTION: round {round} ({what}): {last}");
                }
                refused += 1;
            }
            Ok(mut relay) => {
                started += 1;
                let conn = relay.connect().await;
                let mut got = 0;
                if let Ok(mut sub) = conn
                    .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
                    .await
                {
                    while let Ok(Ok(ev)) =
                        tokio::time::timeout(Duration::from_secs(2), sub.next()).await
                    {
                        match ev {
                            SubscriptionEvent::Envelope(env) => {
                                let original = sent.get(&env.message_id());
                                assert_eq!(
                                    original,
                                    Some(&env),
                                    "round {round} ({what}): delivered an altered envelope"
                                );
                                got += 1;
                                if sub.ack(env.message_id(), &recipient).await.is_err() {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                }
                withheld += sent.len() - got;
                conn.close().await;
                relay.kill_9().await;
            }
        }
    }
    println!(
        "CORRUPTION: {rounds} damaged copies: {refused} refused at start naming the file, {started} started ({withheld} damaged envelopes withheld), 0 altered envelopes delivered"
    );
}

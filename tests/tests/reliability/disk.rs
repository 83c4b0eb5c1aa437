//! A full disk: the relay's data directory on a small tmpfs the test mounts
//! (and unmounts). Deposits get the typed `StorageFull` and are never
//! acknowledged; deliveries, acks and deletes keep working; once space is
//! freed deposits resume; nothing answered `stored` is lost. (Without the
//! right to mount, the same behaviour is checked in-process over a
//! fault-injecting storage backend: `relay/src/store/faults.rs`.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use enlace_protocol::command::RelayError;
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::MessageId;
use enlace_quic::TransportError;
use enlace_tests::WAIT;
use enlace_tests::mailbox::{key, large_envelope, next_envelope, secured_mailbox};
use enlace_tests::relay::Relay;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_deposits_with_storage_full_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let Some(mount) = Tmpfs::mount(&data, "12m") else {
        println!("DISK: cannot mount a tmpfs here; covered by relay store::faults tests only");
        return;
    };
    // Ballast the test deletes later to free space.
    std::fs::write(data.join("ballast"), vec![0u8; 2 << 20]).unwrap();
    let mut relay = Relay::start(&data, &["--quota", "100000"]).await;
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    let spare_key = key();
    let spare = conn.create_mailbox(&spare_key).await.unwrap();

    // Fill the disk.
    let mut stored = Vec::new();
    let refused = loop {
        let env = large_envelope(&sender, mb.send_id);
        match conn.send(&env).await {
            Ok(()) => stored.push(env),
            Err(e) => break e,
        }
        assert!(stored.len() < 1000, "the disk never filled");
    };
    assert!(
        matches!(refused, TransportError::Relay(RelayError::StorageFull)),
        "{refused:?}"
    );
    // Still full: deposits are refused the same way, never answered
    // stored (one may fit in pages a failed commit had allocated, which
    // the relay reuses after reopening its file).
    let mut fulls = 0;
    while fulls < 3 {
        let env = large_envelope(&sender, mb.send_id);
        match conn.send(&env).await {
            Ok(()) => stored.push(env),
            Err(TransportError::Relay(RelayError::StorageFull)) => fulls += 1,
            Err(e) => panic!("{e:?}"),
        }
        assert!(stored.len() < 1000);
    }
    let filled = stored.len();

    // Deliveries and acks keep working on the full disk; deleting a
    // mailbox too.
    let mut sub = conn
        .subscribe(
            mb.receive_id,
            &recipient,
            DeliveryKey::from_bytes(*mb.delivery_key.to_bytes()),
        )
        .await
        .unwrap();
    let acked: HashSet<MessageId> = stored
        .iter()
        .take(filled / 2)
        .map(|e| e.message_id())
        .collect();
    let mut delivered = 0;
    while delivered < filled / 2 {
        let got = next_envelope(&mut sub).await;
        assert!(acked.contains(&got.message_id()), "out of order");
        // Acked with a request of its own, answered once durable.
        conn.ack(mb.receive_id, got.message_id(), &recipient)
            .await
            .unwrap();
        delivered += 1;
    }
    drop(sub);
    conn.delete(spare.receive_id, &spare_key).await.unwrap();

    // Free space (the ballast, and the pages the acks freed): deposits
    // resume.
    std::fs::remove_file(data.join("ballast")).unwrap();
    let mut resumed = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while resumed < 8 {
        let env = large_envelope(&sender, mb.send_id);
        match conn.send(&env).await {
            Ok(()) => {
                stored.push(env);
                resumed += 1;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "deposits did not resume: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    conn.close().await;

    // Nothing stored is lost, across a kill -9.
    relay.kill_9().await;
    let mut relay = Relay::start(&data, &[]).await;
    let conn = relay.connect().await;
    let mut sub = conn
        .subscribe(
            mb.receive_id,
            &recipient,
            DeliveryKey::from_bytes(*mb.delivery_key.to_bytes()),
        )
        .await
        .unwrap();
    let mut missing: HashSet<MessageId> = stored
        .iter()
        .map(|e| e.message_id())
        .filter(|id| !acked.contains(id))
        .collect();
    let owed = missing.len();
    while !missing.is_empty() {
        let got = next_envelope(&mut sub).await;
        let id = got.message_id();
        assert!(
            missing.remove(&id),
            "unexpected envelope (acked before: {})",
            acked.contains(&id)
        );
        sub.ack(got.message_id(), &recipient).await.unwrap();
    }
    println!(
        "DISK: 12 MiB tmpfs filled after {filled} deposits of 64 KiB; refusals typed StorageFull; {} acked on the full disk; {resumed} deposits after freeing space; {owed} owed, 0 lost after kill -9",
        filled / 2
    );
    conn.close().await;
    relay.kill_9().await;
    drop(mount);
}

//! The sweeps: envelopes past their TTL, forwards past theirs, and final
//! forward states past their keep time, every `--sweep-interval-secs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::shared::Shared;
use crate::store::WriteOutcome;

/// Envelopes removed per expiry commit.
const EXPIRY_BATCH: usize = 4096;

pub(crate) async fn sweep(shared: Arc<Shared>, interval_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(interval_secs));
    loop {
        tick.tick().await;
        loop {
            let op = shared.core.expiry_op(shared.clock.now(), EXPIRY_BATCH);
            match shared.writer.submit(op).await {
                Ok(WriteOutcome::Expired { count }) => {
                    if count > 0 {
                        tracing::info!("expired {count} envelopes");
                    }
                    if count < EXPIRY_BATCH {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::error!("expiry sweep failed: {e}");
                    break;
                }
            }
        }
        // Forwards past their TTL, and final states past their keep time.
        let op = shared
            .core
            .forward_expiry_op(shared.clock.now(), EXPIRY_BATCH);
        match shared.writer.submit(op).await {
            Ok(WriteOutcome::Expired { count }) if count > 0 => {
                shared
                    .metrics
                    .forwards_expired
                    .fetch_add(count as u64, Ordering::Relaxed);
                tracing::info!("{count} forwards expired undelivered");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("forward expiry sweep failed: {e}"),
        }
    }
}

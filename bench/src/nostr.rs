//! nostr-rs-relay: each queue is one author key (held by its publisher and
//! its subscriber). Publishers send signed kind-1 events (NIP-01; BIP-340
//! signatures the relay verifies) and count the relay's `OK`s as the
//! acknowledgement; subscribers `REQ` their author's events and acknowledge
//! each by publishing a signed NIP-09 deletion (kind 5) of it, the only way
//! a nostr client can make a relay drop an event, and wait for its `OK`.
//! Events and deletions are signed before the measured phase.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use k256::schnorr::SigningKey;
use rand::RngExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::measure::Tracker;
use crate::workload::{self, Config, Pace, System};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Nostr {
    url: String,
}

impl Nostr {
    pub fn new(target: &str) -> anyhow::Result<Self> {
        let host = target
            .strip_prefix("ws://")
            .context("--target must be ws://127.0.0.1:PORT")?;
        if !host.starts_with("127.") {
            bail!("the benchmark only targets loopback addresses, not {host}");
        }
        Ok(Self {
            url: target.to_owned(),
        })
    }

    async fn connect(&self) -> anyhow::Result<Ws> {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(15),
            tokio_tungstenite::connect_async(self.url.as_str()),
        )
        .await
        .context("connecting to nostr-rs-relay timed out")?
        .context("cannot connect to nostr-rs-relay")?;
        Ok(ws)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A signed NIP-01 event as JSON, and its id (hex).
fn sign_event(
    key: &SigningKey,
    kind: u32,
    tags: Value,
    content: &str,
) -> anyhow::Result<(String, Value)> {
    let pubkey = hex::encode(key.verifying_key().to_bytes());
    let created_at = unix_now();
    let serialized = serde_json::to_string(&json!([0, pubkey, created_at, kind, tags, content]))?;
    let id: [u8; 32] = Sha256::digest(serialized.as_bytes()).into();
    let aux: [u8; 32] = rand::rng().random();
    let sig = key
        .sign_raw(&id, &aux)
        .map_err(|e| anyhow::anyhow!("schnorr signing failed: {e}"))?;
    let id = hex::encode(id);
    let event = json!({
        "id": id,
        "pubkey": pubkey,
        "created_at": created_at,
        "kind": kind,
        "tags": tags,
        "content": content,
        "sig": hex::encode(sig.to_bytes()),
    });
    Ok((id, event))
}

fn content(index: u64, len: usize) -> String {
    let mut s = format!("{index:016x}");
    s.extend((0..len.saturating_sub(16)).map(|i| char::from(b'a' + (i % 26) as u8)));
    s
}

fn content_index(content: &str) -> Option<u64> {
    u64::from_str_radix(content.get(..16)?, 16).ok()
}

pub struct Publisher {
    ws: Ws,
    /// (index, `["EVENT", event]` text)
    events: Vec<(u64, String)>,
}

pub struct Sub {
    ws: Ws,
    author: String,
    /// event id → `["EVENT", deletion]` text
    deletions: std::collections::HashMap<String, String>,
}

pub struct Live {
    ws: Ws,
    deletions: std::collections::HashMap<String, String>,
}

/// Reads the next JSON array the relay sends.
async fn next_json(ws: &mut futures_util::stream::SplitStream<Ws>) -> anyhow::Result<Vec<Value>> {
    loop {
        let msg = tokio::time::timeout(DELIVERY_TIMEOUT, ws.next())
            .await
            .context("nostr-rs-relay sent nothing for 60 s")?
            .context("nostr-rs-relay closed the connection")?
            .context("websocket error")?;
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).context("relay sent bad JSON")?;
                match v {
                    Value::Array(a) => return Ok(a),
                    _ => bail!("relay sent a non-array message"),
                }
            }
            Message::Close(_) => bail!("nostr-rs-relay closed the connection"),
            _ => {}
        }
    }
}

fn check_ok(msg: &[Value]) -> anyhow::Result<bool> {
    match msg.first().and_then(Value::as_str) {
        Some("OK") => {
            if msg.get(2).and_then(Value::as_bool) != Some(true) {
                bail!("nostr-rs-relay refused an event: {:?}", msg.get(3));
            }
            Ok(true)
        }
        Some("NOTICE") => bail!("nostr-rs-relay notice: {:?}", msg.get(1)),
        _ => Ok(false),
    }
}

impl System for Nostr {
    type Pub = Publisher;
    type Sub = Sub;
    type Live = Live;
    type Prepared = usize;
    type Idle = Vec<Ws>;

    async fn setup(
        &self,
        config: &Config,
        plans: Vec<Vec<u64>>,
    ) -> anyhow::Result<Vec<(Publisher, Sub)>> {
        let futures = plans
            .into_iter()
            .map(|plan| async move {
                let (key, events, deletions) = {
                    let secret: [u8; 32] = rand::rng().random();
                    let key = SigningKey::from_bytes(&secret)
                        .map_err(|e| anyhow::anyhow!("bad key: {e}"))?;
                    let mut events = Vec::with_capacity(plan.len());
                    let mut deletions = std::collections::HashMap::with_capacity(plan.len());
                    for &index in &plan {
                        let (id, ev) =
                            sign_event(&key, 1, json!([]), &content(index, config.payload))?;
                        events.push((index, json!(["EVENT", ev]).to_string()));
                        let (_, del) = sign_event(&key, 5, json!([["e", id]]), "")?;
                        deletions.insert(id, json!(["EVENT", del]).to_string());
                    }
                    (key, events, deletions)
                };
                let author = hex::encode(key.verifying_key().to_bytes());
                Ok((
                    Publisher {
                        ws: self.connect().await?,
                        events,
                    },
                    Sub {
                        ws: self.connect().await?,
                        author,
                        deletions,
                    },
                ))
            })
            .collect();
        workload::bounded(futures, 16).await
    }

    async fn publish(
        p: Publisher,
        pace: Pace,
        window: usize,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<()> {
        let (mut sink, mut stream) = p.ws.split();
        let total = p.events.len();
        let permits = Semaphore::new(window);
        let reader = async {
            let mut oks = 0;
            while oks < total {
                if check_ok(&next_json(&mut stream).await?)? {
                    oks += 1;
                    permits.add_permits(1);
                }
            }
            anyhow::Ok(())
        };
        let writer = async {
            for (k, (index, text)) in p.events.into_iter().enumerate() {
                permits.acquire().await?.forget();
                pace.wait(k).await;
                tracker.sent(index);
                sink.send(Message::text(text)).await?;
            }
            anyhow::Ok(())
        };
        tokio::try_join!(reader, writer)?;
        let _ = sink.close().await;
        Ok(())
    }

    async fn subscribe(mut sub: Sub) -> anyhow::Result<Live> {
        let req = json!(["REQ", "q", {"authors": [sub.author], "kinds": [1]}]).to_string();
        sub.ws.send(Message::text(req)).await?;
        // No round trip needed: events stored before the relay handles the
        // REQ come with its stored-events answer, later ones live.
        Ok(Live {
            ws: sub.ws,
            deletions: sub.deletions,
        })
    }

    async fn drain(live: Live, expect: usize, tracker: Arc<Tracker>) -> anyhow::Result<()> {
        let (mut sink, mut stream) = live.ws.split();
        let mut delivered = 0;
        let mut deleted = 0;
        while delivered < expect || deleted < expect {
            let msg = next_json(&mut stream).await?;
            if check_ok(&msg)? {
                deleted += 1;
                continue;
            }
            if msg.first().and_then(Value::as_str) != Some("EVENT")
                || msg.get(1).and_then(Value::as_str) != Some("q")
            {
                continue; // EOSE
            }
            let event = msg.get(2).context("EVENT without an event")?;
            let index = event
                .get("content")
                .and_then(Value::as_str)
                .and_then(content_index)
                .context("event without an index")?;
            if !tracker.delivered(index) {
                bail!("a delivered event carries an unknown index");
            }
            delivered += 1;
            let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
            let deletion = live
                .deletions
                .get(id)
                .context("delivered an event this queue did not publish")?;
            sink.send(Message::text(deletion.clone())).await?;
        }
        let _ = sink.close().await;
        Ok(())
    }

    async fn prepare_idle(&self, clients: usize) -> anyhow::Result<usize> {
        // A nostr relay keeps nothing per subscriber before it connects.
        Ok(clients)
    }

    async fn idle(&self, clients: usize) -> anyhow::Result<Self::Idle> {
        let futures = (0..clients)
            .map(|_| async {
                let mut ws = self.connect().await?;
                let author = hex::encode(rand::rng().random::<[u8; 32]>());
                ws.send(Message::text(
                    json!(["REQ", "q", {"authors": [author], "kinds": [1]}]).to_string(),
                ))
                .await?;
                Ok(ws)
            })
            .collect();
        workload::bounded(futures, 64).await
    }

    async fn close_idle(idle: Self::Idle) {
        drop(idle);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

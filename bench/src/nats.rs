//! NATS JetStream: one WorkQueue stream on file storage, subjects `q.<n>`;
//! each queue has a durable pull consumer with explicit acks filtered on its
//! subject, so an acked message is deleted: store, deliver, ack, delete.
//! Publishers wait for JetStream's PubAck (stored, per the server's
//! `sync_interval`). The payload is the 1 KiB chat text.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use crate::measure::Tracker;
use crate::workload::{self, Config, Pace, System};

const STREAM: &str = "BENCH";
const IDLE_STREAM: &str = "BENCHIDLE";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Nats {
    url: String,
}

impl Nats {
    pub fn new(target: &str) -> anyhow::Result<Self> {
        let host = target
            .strip_prefix("nats://")
            .context("--target must be nats://127.0.0.1:PORT")?;
        if !host.starts_with("127.") {
            bail!("the benchmark only targets loopback addresses, not {host}");
        }
        Ok(Self {
            url: target.to_owned(),
        })
    }

    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(15))
            // PubAcks under fsync-per-write with 800 messages in flight can
            // take longer than the client's default 10 s.
            .request_timeout(Some(Duration::from_secs(60)))
            .connect(&self.url)
            .await
            .context("cannot connect to nats-server")
    }

    async fn fresh_stream(
        &self,
        js: &jetstream::Context,
        name: &str,
        subjects: &str,
    ) -> anyhow::Result<stream::Stream> {
        let _ = js.delete_stream(name).await;
        js.create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            // NATS 2.15 caps a stream at 1,000 consumers unless it sets a
            // limit itself; the idle mode needs one per client.
            max_consumers: 10_000,
            ..Default::default()
        })
        .await
        .context("cannot create the JetStream stream")
    }
}

pub struct Publisher {
    client: async_nats::Client,
    subject: String,
    messages: Vec<(u64, bytes::Bytes)>,
}

pub struct Sub {
    client: async_nats::Client,
    consumer: consumer::Consumer<consumer::pull::Config>,
}

pub struct Live {
    client: async_nats::Client,
    messages: consumer::pull::Stream,
}

impl System for Nats {
    type Pub = Publisher;
    type Sub = Sub;
    type Live = Live;
    type Prepared = usize;
    type Idle = Vec<(async_nats::Client, consumer::pull::Stream)>;

    async fn setup(
        &self,
        config: &Config,
        plans: Vec<Vec<u64>>,
    ) -> anyhow::Result<Vec<(Publisher, Sub)>> {
        let admin = self.connect().await?;
        let js = jetstream::new(admin.clone());
        let stream = self.fresh_stream(&js, STREAM, "q.*").await?;
        let stream = &stream;
        let futures = plans
            .into_iter()
            .enumerate()
            .map(|(q, plan)| async move {
                let consumer = stream
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some(format!("c{q}")),
                        filter_subject: format!("q.{q}"),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    })
                    .await
                    .context("cannot create a consumer")?;
                let messages = plan
                    .iter()
                    .map(|&i| (i, bytes::Bytes::from(workload::payload(i, config.payload))))
                    .collect();
                Ok((
                    Publisher {
                        client: self.connect().await?,
                        subject: format!("q.{q}"),
                        messages,
                    },
                    Sub {
                        client: self.connect().await?,
                        consumer,
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
        let js = &jetstream::new(p.client.clone());
        let subject = &p.subject;
        let tracker = &tracker;
        let mut sends = futures_util::stream::iter(p.messages.into_iter().enumerate())
            .map(|(k, (index, payload))| async move {
                pace.wait(k).await;
                tracker.sent(index);
                js.publish(subject.clone(), payload)
                    .await
                    .context("publish failed")?
                    .await
                    .context("JetStream did not store a message")
            })
            .buffer_unordered(window);
        while let Some(r) = sends.next().await {
            r?;
        }
        Ok(())
    }

    async fn subscribe(sub: Sub) -> anyhow::Result<Live> {
        let messages = sub
            .consumer
            .messages()
            .await
            .context("cannot pull from the consumer")?;
        Ok(Live {
            client: sub.client,
            messages,
        })
    }

    async fn drain(mut live: Live, expect: usize, tracker: Arc<Tracker>) -> anyhow::Result<()> {
        for _ in 0..expect {
            let msg = tokio::time::timeout(DELIVERY_TIMEOUT, live.messages.next())
                .await
                .context("no delivery for 60 s")?
                .context("the consumer stream ended")?
                .map_err(|e| anyhow::anyhow!("pull failed: {e}"))?;
            let index = workload::payload_index(&msg.payload).context("short message")?;
            if !tracker.delivered(index) {
                bail!("a delivered message carries an unknown index");
            }
            msg.ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack failed: {e}"))?;
        }
        live.client.flush().await.context("cannot flush acks")?;
        Ok(())
    }

    async fn prepare_idle(&self, clients: usize) -> anyhow::Result<usize> {
        let admin = self.connect().await?;
        let js = jetstream::new(admin);
        let stream = self.fresh_stream(&js, IDLE_STREAM, "idle.*").await?;
        let stream = &stream;
        let futures = (0..clients)
            .map(|i| async move {
                stream
                    .create_consumer(consumer::pull::Config {
                        durable_name: Some(format!("idle{i}")),
                        filter_subject: format!("idle.{i}"),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    })
                    .await
                    .context("cannot create a consumer")?;
                Ok(())
            })
            .collect();
        workload::bounded(futures, 64).await?;
        Ok(clients)
    }

    async fn idle(&self, clients: usize) -> anyhow::Result<Self::Idle> {
        let futures = (0..clients)
            .map(|i| async move {
                let client = self.connect().await?;
                let js = jetstream::new(client.clone());
                let consumer: consumer::Consumer<consumer::pull::Config> = js
                    .get_consumer_from_stream(format!("idle{i}"), IDLE_STREAM)
                    .await
                    .context("cannot look up the consumer")?;
                let messages = consumer.messages().await.context("cannot pull")?;
                Ok((client, messages))
            })
            .collect();
        workload::bounded(futures, 64).await
    }

    async fn close_idle(idle: Self::Idle) {
        drop(idle);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

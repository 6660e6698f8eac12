//! Topic set-up for a run through the Kafka admin API: every run deletes its topics and creates
//! them fresh with the workload's partition count and topic configs (e.g. `flush.messages=1`),
//! so runs never read each other's records or inherit each other's segment layout, and the
//! same tool works against any Kafka-compatible broker.

use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

use crate::clientconf;
use crate::workload::Workload;

/// How long topic deletion or creation may take to show in metadata.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("timed out after {SETTLE_TIMEOUT:?} waiting for {0}")]
    Timeout(String),
}

pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    opts: AdminOptions,
}

impl Admin {
    pub fn connect(bootstrap: &str) -> Result<Admin, AdminError> {
        let client = clientconf::admin(bootstrap).create()?;
        let opts = AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT));
        Ok(Admin { client, opts })
    }

    /// Deletes the workload's topics if they exist, then creates them with its settings and
    /// waits until every partition has a leader.
    pub fn recreate_topics(&self, w: &Workload) -> Result<(), AdminError> {
        let names = w.topic_names();
        self.delete_topics(&names)?;
        self.create_topics(w, &names)?;
        self.wait_for("topics to be ready", |m| {
            names
                .iter()
                .all(|t| topic_ready(m, t, w.partitions_per_topic))
        })
    }

    pub fn delete_topics(&self, names: &[String]) -> Result<(), AdminError> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for result in block_on(self.client.delete_topics(&refs, &self.opts))? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
            }
        }
        self.wait_for("topics to be deleted", |m| {
            m.topics()
                .iter()
                .all(|t| !names.iter().any(|n| n == t.name()))
        })
    }

    fn create_topics(&self, w: &Workload, names: &[String]) -> Result<(), AdminError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut pending: Vec<String> = names.to_vec();
        while !pending.is_empty() {
            let specs: Vec<NewTopic> = pending.iter().map(|name| new_topic(name, w)).collect();
            let results = block_on(self.client.create_topics(&specs, &self.opts))?;
            let mut retry = Vec::new();
            for result in results {
                match result {
                    Ok(_) => {}
                    // A deletion still in progress: try again shortly.
                    Err((topic, RDKafkaErrorCode::TopicAlreadyExists))
                        if Instant::now() < deadline =>
                    {
                        retry.push(topic)
                    }
                    Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
                }
            }
            if !retry.is_empty() {
                std::thread::sleep(RETRY_PAUSE);
            }
            pending = retry;
        }
        Ok(())
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Metadata) -> bool) -> Result<(), AdminError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            match self.client.inner().fetch_metadata(None, REQUEST_TIMEOUT) {
                Ok(m) if done(&m) => return Ok(()),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "metadata request failed; retrying"),
            }
            if Instant::now() >= deadline {
                return Err(AdminError::Timeout(what.to_string()));
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }
}

fn new_topic<'a>(name: &'a str, w: &'a Workload) -> NewTopic<'a> {
    let mut t = NewTopic::new(
        name,
        w.partitions_per_topic as i32,
        TopicReplication::Fixed(w.replication_factor),
    );
    for (k, v) in &w.topic_config {
        t = t.set(k, v);
    }
    t
}

fn topic_ready(m: &Metadata, name: &str, partitions: usize) -> bool {
    m.topics().iter().any(|t| {
        t.name() == name
            && t.error().is_none()
            && t.partitions().len() == partitions
            && t.partitions()
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0)
    })
}

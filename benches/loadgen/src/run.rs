//! One benchmark run against one broker address, from topic creation to the summary: create
//! the topics, start the consumers and wait until they have caught up with their (empty)
//! partitions, start the producers, print progress once a second through warm-up and
//! measurement, let the consumers drain every acknowledged message, then merge the per-thread
//! histograms. Threads are always stopped and joined, on errors too (`Crew`'s drop).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::admin::{Admin, AdminError};
use crate::clientconf;
use crate::consumer::{self, ConsumerPlan};
use crate::latency::{LatencyError, LatencySummary};
use crate::monitor::Monitor;
use crate::payload::{ProducerId, RunId};
use crate::procstat::Pid;
use crate::producer::{self, ProducerPlan, ReadyProducer};
use crate::schedule::{Phases, RateSchedule};
use crate::seqset::{SeqSets, SubscriptionId};
use crate::shared::RunShared;
use crate::stats::{self, ReadsPerMessage, SharedHist};
use crate::summary::{RunSummary, Throughput};
use crate::workload::{Rate, Workload};

/// How long consumers may take to reach the end of their new, empty partitions.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the drain checks whether every acknowledged message has been consumed.
const DRAIN_CHECK: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("creating a client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("consumers not at the end of their partitions after {READY_TIMEOUT:?}")]
    NotReady,
    #[error(transparent)]
    Latency(#[from] LatencyError),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bootstrap: String,
    pub label: String,
    pub broker_pid: Option<Pid>,
    pub keep_topics: bool,
    /// Print the once-a-second progress line.
    pub progress: bool,
}

/// A finished run: its summary and the full histograms (for `.hgrm` files and merging).
pub struct RunOutput {
    pub summary: RunSummary,
    pub publish: Histogram<u64>,
    pub e2e: Histogram<u64>,
}

/// The run's threads; dropping it stops and joins them all.
struct Crew {
    shared: Arc<RunShared>,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
    publish: Vec<SharedHist>,
    e2e: Vec<SharedHist>,
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.shared.stop_producers();
        for h in self.producers.drain(..) {
            let _ = h.join();
        }
        self.shared.stop_consumers();
        for h in self.consumers.drain(..) {
            let _ = h.join();
        }
    }
}

pub fn run(w: &Workload, opts: &RunOptions) -> Result<RunOutput, RunError> {
    let admin = Admin::connect(&opts.bootstrap)?;
    tracing::info!(bootstrap = %opts.bootstrap, topics = ?w.topic_names(), "recreating topics");
    admin.recreate_topics(w)?;
    let started_at_unix_s = unix_now_s();
    let per_producer = w.planned_msgs().map(|m| m.div_ceil(w.producers() as u64));
    let shared = Arc::new(RunShared::new(
        RunId::random(),
        SeqSets::new(w.subscriptions_per_topic, w.producers(), per_producer),
        ReadsPerMessage(w.subscriptions_per_topic as u64),
        w.message_size_bytes as u64,
    ));
    let mut crew = Crew {
        shared: shared.clone(),
        producers: Vec::new(),
        consumers: Vec::new(),
        publish: Vec::new(),
        e2e: Vec::new(),
    };
    start_consumers(w, opts, &mut crew)?;
    let ready = create_producers(w, opts, &mut crew)?;
    let mut monitor = Monitor::new(&shared, opts.broker_pid, opts.progress);
    let phases = Phases::new(shared.clock.now_ns(), w.warmup_s, w.duration_s);
    shared.phases.set(phases).expect("phases set once");
    monitor.mark_start();
    crew.producers = ready.into_iter().map(ReadyProducer::start).collect();
    monitor.tick_until(phases.end_ns, &crew.publish, &crew.e2e);
    drain(w, &mut crew, &mut monitor, phases);
    let out = finish(w, opts, crew, monitor, phases, started_at_unix_s)?;
    if !opts.keep_topics {
        if let Err(e) = admin.delete_topics(&w.topic_names()) {
            tracing::warn!(error = %e, "could not delete the run's topics");
        }
    }
    Ok(out)
}

fn start_consumers(w: &Workload, opts: &RunOptions, crew: &mut Crew) -> Result<(), RunError> {
    let ready = Arc::new(AtomicUsize::new(0));
    let group = format!("shardlog-bench-{:x}", crew.shared.run.0);
    let per_topic = w.subscriptions_per_topic * w.consumers_per_topic;
    for (t, topic) in w.topic_names().into_iter().enumerate() {
        for i in 0..per_topic {
            let (s, c) = (i / w.consumers_per_topic, i % w.consumers_per_topic);
            let index = t * per_topic + i;
            let plan = ConsumerPlan {
                index,
                subscription: SubscriptionId(s),
                topic: topic.clone(),
                partitions: consumer::partitions_for(
                    c,
                    w.consumers_per_topic,
                    w.partitions_per_topic,
                ),
            };
            let hist = stats::new_shared();
            let config = clientconf::consumer(&opts.bootstrap, w, index, &group);
            let handle = consumer::spawn(
                &config,
                plan,
                crew.shared.clone(),
                hist.clone(),
                ready.clone(),
            )?;
            crew.consumers.push(handle);
            crew.e2e.push(hist);
        }
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    while ready.load(Ordering::SeqCst) < w.consumers() {
        if Instant::now() >= deadline {
            return Err(RunError::NotReady);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Creates and connects every producer; none sends until started.
fn create_producers(
    w: &Workload,
    opts: &RunOptions,
    crew: &mut Crew,
) -> Result<Vec<ReadyProducer>, RunError> {
    let producers = w.producers();
    let mut ready = Vec::with_capacity(producers);
    for (t, topic) in w.topic_names().into_iter().enumerate() {
        for j in 0..w.producers_per_topic {
            let index = t * w.producers_per_topic + j;
            let plan = ProducerPlan {
                id: ProducerId(index as u32),
                topic: topic.clone(),
                schedule: match w.rate {
                    Rate::Max => None,
                    Rate::Fixed { msgs_per_s } => {
                        Some(RateSchedule::new(msgs_per_s, producers, index))
                    }
                },
                keys: w.keys,
                message_bytes: w.message_size_bytes,
                flush_timeout: Duration::from_secs(w.drain_timeout_s),
            };
            let hist = stats::new_shared();
            let config = clientconf::producer(&opts.bootstrap, w, index);
            ready.push(producer::create(
                &config,
                plan,
                crew.shared.clone(),
                hist.clone(),
            )?);
            crew.publish.push(hist);
        }
    }
    Ok(ready)
}

/// Waits (bounded by the drain timeout) until the producers have had every message
/// acknowledged and the consumers have read every acknowledged message.
fn drain(w: &Workload, crew: &mut Crew, monitor: &mut Monitor, phases: Phases) {
    let shared = crew.shared.clone();
    let deadline_ns = phases.end_ns + w.drain_timeout_s * 1_000_000_000;
    loop {
        let producers_done = crew.producers.iter().all(JoinHandle::is_finished);
        if producers_done && shared.counters.caught_up() {
            break;
        }
        if shared.clock.now_ns() >= deadline_ns {
            tracing::warn!(
                totals = ?shared.counters.totals(),
                "drain timeout: not every message was acknowledged and consumed"
            );
            break;
        }
        std::thread::sleep(DRAIN_CHECK);
        monitor.tick_if_due(&crew.publish, &crew.e2e);
    }
    shared.stop_producers();
    for h in crew.producers.drain(..) {
        let _ = h.join();
    }
    shared.stop_consumers();
    for h in crew.consumers.drain(..) {
        let _ = h.join();
    }
}

fn finish(
    w: &Workload,
    opts: &RunOptions,
    crew: Crew,
    monitor: Monitor,
    phases: Phases,
    started_at_unix_s: u64,
) -> Result<RunOutput, RunError> {
    let publish = stats::merged(&crew.publish)?;
    let e2e = stats::merged(&crew.e2e)?;
    let window_s = phases.window_s();
    let [acked, acked_bytes, consumed, consumed_bytes] = crew.shared.counters.window();
    let produced = Throughput::over(acked, acked_bytes, window_s);
    let (broker, timeline) = monitor.finish(produced.bytes);
    let summary = RunSummary {
        tool: concat!("shardlog-bench ", env!("CARGO_PKG_VERSION")).to_string(),
        label: opts.label.clone(),
        bootstrap: opts.bootstrap.clone(),
        workload_name: w.name.clone(),
        workload: serde_json::to_value(w).unwrap_or_default(),
        started_at_unix_s,
        window_s,
        produced,
        consumed: Throughput::over(consumed, consumed_bytes, window_s),
        totals: crew.shared.counters.totals(),
        publish_latency: LatencySummary::of(&publish),
        e2e_latency: LatencySummary::of(&e2e),
        broker,
        timeline,
    };
    Ok(RunOutput {
        summary,
        publish,
        e2e,
    })
}

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

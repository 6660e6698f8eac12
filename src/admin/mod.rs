//! The admin HTTP listener (`--admin-listen`, default 127.0.0.1:9644): Prometheus metrics at
//! `/metrics` and a small JSON API for operators and orchestrators (`/v1/status/live`,
//! `/v1/status/ready`, `/v1/brokers`, `/v1/topics`, `/v1/groups`; docs/operations.md).
//!
//! It runs on shard 0 beside the Kafka listener, outside the request path: a scrape asks every
//! shard for a snapshot over the mesh (`collect`, a few microseconds of each shard's time),
//! then merges and renders them as text or JSON (`render`) on shard 0's blocking thread, which
//! is not pinned, so the rendering does not hold shard 0's turn; each connection gets one response and is closed (`http`). Connections are
//! bounded in number, size and time, so a misbehaving scraper costs little.

pub mod collect;
pub mod http;
pub mod render;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;

use crate::metrics::Format;
use crate::runtime::{self, Semaphore, TcpStream};
use crate::shard::Shard;
use http::{HttpError, Request, Response};
use render::ProcessFacts;

/// Admin connections served at once; more wait in the listen backlog.
const CONNECTIONS_MAX: u64 = 16;
/// A request head must arrive within this, or the connection is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// When the broker started, for uptime.
#[derive(Clone, Copy, Debug)]
pub struct Started {
    /// Monotonic start.
    pub at: Instant,
    /// Wall-clock start.
    pub wall: SystemTime,
}

/// Binds `addr` (exits the process if it cannot, as the Kafka listener does) and serves
/// admin requests until the task is dropped. Runs on shard 0.
pub async fn serve(shard: Rc<Shard>, addr: SocketAddr, started: Started) {
    let listener = match runtime::listen_exclusive(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %addr, error = %e, "cannot listen for admin requests");
            std::process::exit(2);
        }
    };
    let bound = listener.local_addr().map_or(addr, |a| a);
    tracing::info!(addr = %bound, "admin listening");
    let slots = Rc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            return;
        };
        match listener.accept().await {
            Ok(stream) => {
                let shard = shard.clone();
                runtime::spawn(async move {
                    answer(&shard, stream, started).await;
                    drop(permit);
                })
                .detach();
            }
            Err(e) => tracing::warn!(error = %e, "admin accept failed"),
        }
    }
}

/// Reads one request head, answers it, closes.
async fn answer(shard: &Rc<Shard>, mut stream: TcpStream, started: Started) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let parsed = loop {
        match http::parse(&buf) {
            Ok(None) => {}
            done => break done,
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let (response, head_only) = match parsed {
        Ok(Some(req)) => (route(shard, &req, started).await, req.method == "HEAD"),
        Err(HttpError::TooLarge) => (Response::text(431, "request head too large"), false),
        Err(HttpError::Malformed) | Ok(None) => (Response::text(400, "bad request"), false),
    };
    let _ = stream.write_all(&response.encode(head_only)).await;
    let _ = stream.close().await;
}

/// What a request gets.
async fn route(shard: &Rc<Shard>, req: &Request, started: Started) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "only GET and HEAD are served");
    }
    match req.path.as_str() {
        "/metrics" => {
            let format = Format::from_accept(req.accept.as_deref());
            let mut snaps = collect::all(shard).await;
            let cluster = cluster_facts(shard);
            let text = runtime::off_thread(move || {
                render::sort(&mut snaps);
                let facts = ProcessFacts {
                    cluster,
                    ..process_facts(started)
                };
                render::metrics(&snaps, &facts, format)
            });
            Response::new(200, format.content_type(), text.await)
        }
        "/v1/status/live" => Response::json(&json!({"live": true})),
        "/v1/status/ready" => ready(shard),
        "/v1/brokers" => brokers(shard, started),
        "/v1/cluster" => cluster(),
        "/v1/topics" => json_off_thread(shard, render::topics_json).await,
        "/v1/groups" => json_off_thread(shard, render::groups_json).await,
        "/" => Response::text(
            200,
            "shardlog admin: /metrics /v1/status/live /v1/status/ready /v1/brokers /v1/cluster /v1/topics /v1/groups",
        ),
        _ => Response::text(404, "not found"),
    }
}

/// Every shard's snapshot, turned into JSON by `render` on the blocking thread.
async fn json_off_thread(
    shard: &Rc<Shard>,
    render: fn(&[collect::ShardSnapshot]) -> serde_json::Value,
) -> Response {
    let mut snaps = collect::all(shard).await;
    runtime::off_thread(move || {
        render::sort(&mut snaps);
        Response::json(&render(&snaps))
    })
    .await
}

/// Ready while every shard has started (the admin server starts only then) and the broker is
/// not shutting down.
fn ready(shard: &Shard) -> Response {
    let ready = !shard.is_stopping();
    let body = json!({"ready": ready, "shards": shard.shards()});
    let mut r = Response::json(&body);
    if !ready {
        r.status = 503;
    }
    r
}

/// The metadata log's figures for the metrics (read on shard 0, where the voter runs) and
/// the partitions' health from shard 0's registry snapshot.
fn cluster_facts(shard: &Shard) -> Option<render::ClusterFacts> {
    let snap = shard.metadata();
    let partitions = snap.cluster.as_ref().map(|c| c.partition_health());
    crate::cluster::edge::view().map(|v| render::ClusterFacts {
        leader: v.leader.map_or(-1, |l| l as i64),
        term: v.term,
        applied: v.applied,
        brokers: v.brokers.len() as u64,
        alive: v.brokers.iter().filter(|b| b.alive).count() as u64,
        partitions: partitions.unwrap_or_default(),
    })
}

/// `/v1/cluster`: the metadata log as this broker's voter sees it (on shard 0, where the
/// voter runs), or `{"mode": "single"}` for a broker outside a cluster.
fn cluster() -> Response {
    match crate::cluster::edge::view() {
        None => Response::json(&json!({"mode": "single"})),
        Some(v) => Response::json(&json!({
            "mode": "cluster",
            "node_id": v.node_id,
            "voters": v.voters,
            "metadata_leader": v.leader,
            "metadata_term": v.term,
            "metadata_applied": v.applied,
            "leader_since_seconds": v.leader_since_s,
            "brokers": v.brokers.iter().map(|b| json!({
                "node_id": b.node_id, "host": b.host, "port": b.port,
                "cluster_listener": b.cluster_addr, "shards": b.shards, "alive": b.alive,
            })).collect::<Vec<_>>(),
        })),
    }
}

fn brokers(shard: &Shard, started: Started) -> Response {
    let c = &shard.config;
    Response::json(&json!([{
        "node_id": c.node_id,
        "host": c.advertised_host,
        "port": c.advertised_port,
        "cluster_id": shard.cluster_id,
        "shards": c.shards,
        "is_alive": true,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": started.at.elapsed().as_secs_f64(),
    }]))
}

/// The process's memory, files and CPU time from /proc (None where unreadable).
fn process_facts(started: Started) -> ProcessFacts {
    let page = clamp_sysconf(libc::_SC_PAGESIZE, 4096);
    let ticks = clamp_sysconf(libc::_SC_CLK_TCK, 100);
    let statm = std::fs::read_to_string("/proc/self/statm").ok();
    let rss_pages = statm.and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let cpu_s = stat
        .and_then(|s| cpu_ticks(&s))
        .map(|t| t as f64 / ticks as f64);
    let start = started.wall.duration_since(SystemTime::UNIX_EPOCH);
    ProcessFacts {
        rss_bytes: rss_pages.map(|p| p * page),
        open_fds,
        cpu_s,
        uptime_s: started.at.elapsed().as_secs_f64(),
        start_time_s: start.map_or(0.0, |d| d.as_secs_f64()),
        cluster: None,
    }
}

fn clamp_sysconf(name: libc::c_int, default: u64) -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        default
    }
}

/// utime + stime from /proc/self/stat (fields 14 and 15, counted after the `(comm)` field,
/// which may hold spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 300 45 0 0";
        assert_eq!(super::cpu_ticks(stat), Some(345));
        assert_eq!(super::cpu_ticks("garbage"), None);
    }
}

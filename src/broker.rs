//! The broker around the shards: each shard's life from start to stop, with the network edge
//! put around it. A shard starts (`Shard::start`: mesh, partitions, groups), waits until every
//! shard has started, then listens (`net::accept_loop`) and does its periodic work until the
//! shutdown flag is set; then it stops listening, drains and closes (`Shard::stop`) and logs
//! its request latencies. This is the only module that names both `shard` and `net`: the
//! network edge serves a shard, and a shard knows nothing of the network.

use std::sync::Arc;

use crate::admin;
use crate::net::{self, Admission};
use crate::runtime::{self, Mesh};
use crate::shard::{self, Boot, Shard};

/// Shard `id`'s whole life on its executor; `admission` holds the connection limits that all
/// shards' listeners share.
pub async fn run_shard(
    id: usize,
    mesh: Mesh<Shard>,
    boot: Boot,
    admission: Arc<Admission>,
    started: admin::Started,
) {
    let shard = Shard::start(id, mesh, &boot).await;
    shard::wait_for_peers(&boot).await;
    let stats = net::stats::shard_stats();
    // Kept (not detached): dropping the task cancels the accept loop at shutdown.
    let listener = runtime::spawn(net::accept_loop(shard.clone(), admission, stats.clone()));
    let admin = match shard.config.admin_listen {
        Some(addr) if id == 0 => Some(runtime::spawn(admin::serve(shard.clone(), addr, started))),
        _ => None,
    };
    let voter = match &shard.config.cluster {
        Some(c) if id == 0 => {
            let cfg = &shard.config;
            let me = crate::cluster::Broker {
                node_id: cfg.node_id,
                host: cfg.advertised_host.clone(),
                port: u16::try_from(cfg.advertised_port).unwrap_or(0),
                cluster_addr: c.listen.to_string(),
                shards: cfg.shards as u32,
                alive: true,
            };
            let (c, dir) = (c.clone(), cfg.data_dir.clone());
            let install = shard.installer();
            Some(runtime::spawn(async move {
                crate::cluster::edge::run_voter(me, c, &dir, install).await
            }))
        }
        _ => None,
    };
    shard.housekeeping(&boot.shutdown).await;
    shard.hand_off_leadership().await;
    shard::handed_off(&boot).await;
    drop(voter);
    drop(admin);
    drop(listener);
    shard.stop().await;
    stats.times.log(id);
}

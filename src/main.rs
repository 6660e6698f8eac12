//! `shardlog`: parses settings, loads the topic registry, starts one executor per shard and
//! waits for them; SIGINT/SIGTERM stop the shards cleanly (in-flight requests finish, logs are
//! flushed and closed with their clean-shutdown markers). With a subcommand (`topics`, `groups`,
//! `cluster`) it is instead an admin client of a running broker (`shardlog::cli`); `tune` checks
//! the host (`shardlog::tune`).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use shardlog::broker;
use shardlog::cli::Cli;
use shardlog::config::{Config, Flags};
use shardlog::metadata::{store, Snapshot};
use shardlog::shard::Boot;
use shardlog::{net, runtime};

/// How long start-up waits for a listener left on the address (a killed broker's, while the
/// kernel tears it down) to go before it gives up.
const PORT_WAIT_MS: u64 = 10_000;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(cmd) = cli.command {
        return Ok(shardlog::cli::run(cmd));
    }
    run_broker(cli.broker)?;
    Ok(ExitCode::SUCCESS)
}

fn run_broker(flags: Flags) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A panic on any shard ends the process: half a broker (some partitions unreachable)
    // is worse than a restart, and recovery makes a crash safe.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!("panic: {info}; aborting");
        std::process::abort();
    }));
    let mut config = Config::from_flags(flags)?;
    runtime::keep_freed_memory();
    std::fs::create_dir_all(&config.data_dir)?;
    // Every path below is absolute: glommio's directory open fails (EBADF) on relative paths
    // such as `./data`, and the shards must not depend on the working directory.
    config.data_dir = std::fs::canonicalize(&config.data_dir)?;
    let config = Arc::new(config);
    let (cluster_id, snapshot) = match &config.cluster {
        None => single_node_registry(&config.data_dir)?,
        Some(c) => cluster_registry(config.node_id, c),
    };
    let boot = Boot {
        config: config.clone(),
        cluster_id,
        snapshot: Arc::new(snapshot),
        shutdown: runtime::shutdown_flag()?,
        started: Default::default(),
        handed_off: Default::default(),
    };
    let admission = net::Admission::new(config.connections_max, config.connections_per_ip_max);
    tracing::info!(
        shards = config.shards,
        pinned = config.pin,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        "starting shardlog"
    );
    net::wait_for_port(config.listen, PORT_WAIT_MS)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let executors = runtime::Executors {
        shards: config.shards,
        pin: config.pin,
        mesh_channel_capacity: config.mesh_channel_capacity,
    };
    let started = shardlog::admin::Started {
        at: std::time::Instant::now(),
        wall: std::time::SystemTime::now(),
    };
    runtime::run_shards(executors, move |id, mesh| {
        broker::run_shard(id, mesh, boot.clone(), admission.clone(), started)
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// A single broker's registry from `__cluster/topics.json` (a fresh one for a new data
/// directory; none with partition directories but no registry: that refuses to start), its
/// orphan partition directories swept, the disk space reserve made.
fn single_node_registry(data_dir: &std::path::Path) -> anyhow::Result<(String, Snapshot)> {
    let registry = match store::load(data_dir)? {
        Some(r) => r,
        None => {
            // A data directory with partitions but no registry lost its topics.json: starting
            // fresh would sweep every partition away as an orphan.
            let parts = store::partition_dirs(data_dir)?;
            if let Some((path, _, _)) = parts.first() {
                anyhow::bail!(
                    "{} holds {} partition directories (such as {}) but no __cluster/topics.json; \
                     refusing to start, which would delete them: restore topics.json or move \
                     the partition directories away",
                    data_dir.display(),
                    parts.len(),
                    path.display()
                );
            }
            let fresh = store::StoredRegistry {
                version: 0,
                cluster_id: uuid::Uuid::new_v4().simple().to_string(),
                topics: Vec::new(),
            };
            store::save(data_dir, &fresh)?;
            fresh
        }
    };
    for orphan in store::remove_orphans(data_dir, &registry)? {
        tracing::warn!(dir = %orphan.display(), "removed a partition directory of no known topic");
    }
    match store::keep_reserve(data_dir) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "the disk is nearly full: no space reserve for deleting topics; free some space"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot make the disk space reserve"),
    }
    Ok((
        registry.cluster_id.clone(),
        Snapshot::from_topics(registry.version, registry.topics),
    ))
}

/// A cluster member starts with an empty registry that names only itself and the voters;
/// the metadata log's image replaces it as soon as the voter has replayed its log. The
/// cluster id is derived from the voter set, the same on every member.
fn cluster_registry(node_id: i32, c: &shardlog::config::ClusterConfig) -> (String, Snapshot) {
    let voters: Vec<String> = c.voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
    let a = crc32c::crc32c(voters.join(",").as_bytes());
    let b = crc32c::crc32c_append(a, b"shardlog-cluster");
    let id = uuid::Uuid::from_u64_pair(u64::from(a) << 32 | u64::from(b), u64::from(a ^ b));
    let meta = shardlog::metadata::ClusterMeta {
        me: node_id,
        voters: c.voters.keys().map(|&v| v as i32).collect(),
        ..Default::default()
    };
    let snapshot = Snapshot {
        cluster: Some(Arc::new(meta)),
        ..Snapshot::default()
    };
    (id.simple().to_string(), snapshot)
}

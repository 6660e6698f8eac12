//! The client compatibility matrix: every real client × every feature a Kafka user expects,
//! run against one real broker, and the tables of docs/compatibility.md written from the run.
//!
//! Each cell is its own process: a driver per client library in tests/clients/matrix (see the
//! README there for the features and the result protocol) runs one feature and prints PASS,
//! LACKS (the client cannot do it) or FAIL. Nothing in the document is written by hand between
//! the `generated` markers: the API table is the broker's own ApiVersions answer, and the
//! client table holds exactly what the drivers reported. The test fails if any cell failed.
//!
//! `SHARDLOG_MATRIX_CLIENTS` / `SHARDLOG_MATRIX_FEATURES` (comma-separated ids) run a subset and
//! leave the document alone; `SHARDLOG_MATRIX_JOBS` sets how many cells run at once (4).

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use harness::{clients_dir, Broker};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

mod matrix;

use matrix::{Cell, Client, Outcome, CLIENTS, FEATURES};

const CELL_LIMIT_SECS: u64 = 120;
const JOBS_DEFAULT: usize = 4;

fn selected(var: &str, all: Vec<&'static str>) -> (Vec<&'static str>, bool) {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => {
            let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
            for w in &wanted {
                assert!(all.contains(w), "{var}: unknown id {w}; known: {all:?}");
            }
            (
                all.into_iter().filter(|a| wanted.contains(a)).collect(),
                true,
            )
        }
        _ => (all, false),
    }
}

fn driver_command(client: &Client, bootstrap: &str, feature: &str, prefix: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &CELL_LIMIT_SECS.to_string(), client.program])
        .arg(clients_dir().join("matrix").join(client.driver))
        .args([bootstrap, feature, prefix])
        .current_dir(clients_dir().join("matrix"));
    c
}

/// Runs one cell and reads its verdict from the last line of stdout.
fn run_cell(client: &Client, bootstrap: &str, feature: &str) -> Outcome {
    let prefix = format!("m-{}-{}", client.id, feature);
    let started = Instant::now();
    let out = driver_command(client, bootstrap, feature, &prefix)
        .output()
        .expect("start a driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let outcome = Outcome::parse(stdout.lines().rev().find(|l| !l.trim().is_empty()));
    let outcome = match (outcome, out.status.code()) {
        (Outcome::Fail(_), Some(124 | 137)) => {
            Outcome::Fail(format!("no verdict within {CELL_LIMIT_SECS} s"))
        }
        (o @ (Outcome::Pass(_) | Outcome::Lacks(_)), Some(0)) => o,
        (Outcome::Fail(why), _) => Outcome::Fail(why),
        (_, code) => Outcome::Fail(format!("driver exited with {code:?}")),
    };
    if let Outcome::Fail(why) = &outcome {
        eprintln!("--- {prefix} FAILED: {why}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}");
    }
    eprintln!(
        "{prefix}: {} ({:.1} s)",
        outcome.word(),
        started.elapsed().as_secs_f64()
    );
    outcome
}

fn client_version(client: &Client, bootstrap: &str) -> String {
    let out = driver_command(client, bootstrap, "version", "x")
        .output()
        .expect("start a driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("VERSION ")) {
        Some(v) => v.trim().to_string(),
        None => panic!(
            "{} did not report its version (is it installed? run tests/setup-clients.sh):\n{}{}",
            client.id,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Runs every cell, `jobs` at a time, and returns the outcomes keyed by (client, feature).
fn run_cells(
    clients: &[&'static Client],
    features: &[&'static str],
    bootstrap: &str,
    jobs: usize,
) -> BTreeMap<(&'static str, &'static str), Outcome> {
    let queue: Vec<(&Client, &'static str)> = features
        .iter()
        .flat_map(|f| clients.iter().map(move |c| (*c, *f)))
        .rev()
        .collect();
    let queue = Mutex::new(queue);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let Some((client, feature)) = queue.lock().unwrap().pop() else {
                    return;
                };
                let outcome = run_cell(client, bootstrap, feature);
                results
                    .lock()
                    .unwrap()
                    .insert((client.id, feature), outcome);
            });
        }
    });
    results.into_inner().unwrap()
}

fn api_versions(broker: &Broker) -> Vec<(i16, i16, i16)> {
    let mut c = broker.client();
    let resp: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(resp.error_code, 0);
    let mut keys: Vec<_> = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    keys.sort();
    keys
}

fn document() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md")
}

#[test]
fn every_client_does_every_feature_it_has() {
    let (clients, some_clients) = selected(
        "SHARDLOG_MATRIX_CLIENTS",
        CLIENTS.iter().map(|c| c.id).collect(),
    );
    let (features, some_features) = selected(
        "SHARDLOG_MATRIX_FEATURES",
        FEATURES.iter().map(|f| f.0).collect(),
    );
    let clients: Vec<&Client> = CLIENTS.iter().filter(|c| clients.contains(&c.id)).collect();
    let jobs = std::env::var("SHARDLOG_MATRIX_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(JOBS_DEFAULT);

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_logging(
        &dir.path().join("data"),
        2,
        harness::free_port(),
        matrix::BROKER_FLAGS,
        "shardlog=debug,shardlog::requests=trace",
    );
    let versions: Vec<String> = clients
        .iter()
        .map(|c| client_version(c, &broker.addr()))
        .collect();
    let started = Instant::now();
    let outcomes = run_cells(&clients, &features, &broker.addr(), jobs);
    eprintln!(
        "{} cells in {:.0} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );

    let cells: Vec<Cell> = matrix::cells(&clients, &versions, &features, &outcomes);
    let apis = api_versions(&broker);
    let usage = matrix::usage_from_log(&broker.log(), &clients);
    let names: Vec<String> = clients
        .iter()
        .zip(&versions)
        .map(|(c, v)| matrix::column_name(c, v))
        .collect();
    let usage = matrix::usage_table(&usage, &clients, &names);
    broker.stop();
    if !(some_clients || some_features) {
        matrix::write_document(&document(), &apis, &cells, &usage);
    } else {
        eprintln!("{}\n{usage}", matrix::client_table(&cells));
    }
    let failed: Vec<String> = cells
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Fail(why) => Some(format!("{} / {}: {why}", c.client_name, c.feature)),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "failing cells:\n{}", failed.join("\n"));
}

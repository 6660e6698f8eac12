//! `shardlog cluster info`: who is in the cluster, as `kafka-cluster cluster-id` and
//! `kafka-broker-api-versions` tell it, so an operator can see at a glance which broker answers,
//! which id the cluster has and which API versions the broker serves (what a client will
//! negotiate). It asks DescribeCluster when the broker serves it, Metadata otherwise, and lists
//! the ApiVersions answer the connection negotiated anyway. `shardlog cluster status`: the
//! partitions' health from Metadata (all topics, internal ones too): how many partitions, how
//! many have no leader or fewer in-sync replicas than replicas, and per broker the partitions
//! it leads and holds — Kafka's LeaderCount, OfflinePartitionsCount and
//! UnderReplicatedPartitions, as an operator checks them before maintenance.

use clap::Subcommand;
use kafka_protocol::messages::*;

use super::table;
use super::{check, print, topics, CliError, Conn};
use crate::client::Client;

const DESCRIBE_CLUSTER: (i16, i16) = (0, 1);

/// What `shardlog cluster` does.
#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Print the cluster id, the controller, the brokers (id, host, port, rack) and the API
    /// versions the bootstrap broker serves
    Info,
    /// Print the partitions' health: totals, offline and under-replicated partitions, and per
    /// broker the partitions it leads and holds
    Status,
}

/// A cluster as the broker describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster id (empty when the broker sent none).
    pub id: String,
    /// The controller's broker id (-1: none known).
    pub controller: i32,
    /// (broker id, host, port, rack), sorted by id.
    pub brokers: Vec<(i32, String, i32, Option<String>)>,
}

/// Runs one `cluster` action against the broker `conn` names.
pub fn run(conn: &Conn, action: Action) -> Result<(), CliError> {
    let mut c = conn.connect()?;
    match action {
        Action::Info => info(&mut c),
        Action::Status => print(&status(&topics::metadata(&mut c, None)?)),
    }
}

fn info(c: &mut Client) -> Result<(), CliError> {
    let cluster = describe(c)?;
    let apis = c.served()?.to_vec();
    print(&render(&cluster, &apis))
}

/// DescribeCluster when served, else Metadata (no topics).
fn describe(c: &mut Client) -> Result<Cluster, CliError> {
    match c.version(
        ApiKey::DescribeCluster,
        DESCRIBE_CLUSTER.0,
        DESCRIBE_CLUSTER.1,
    ) {
        Ok(version) => {
            let resp: DescribeClusterResponse = c.call(
                ApiKey::DescribeCluster,
                version,
                &DescribeClusterRequest::default(),
            )?;
            check(
                || "describing the cluster".into(),
                resp.error_code,
                resp.error_message.as_deref(),
            )?;
            Ok(from_describe_cluster(&resp))
        }
        Err(crate::client::ClientError::Unsupported { .. }) => {
            Ok(from_metadata(&topics::metadata(c, Some(&[][..]))?))
        }
        Err(e) => Err(e.into()),
    }
}

/// The cluster a DescribeCluster response describes.
pub fn from_describe_cluster(resp: &DescribeClusterResponse) -> Cluster {
    let mut brokers: Vec<_> = resp
        .brokers
        .iter()
        .map(|b| {
            let rack = b.rack.as_ref().map(|r| r.to_string());
            (b.broker_id.0, b.host.to_string(), b.port, rack)
        })
        .collect();
    brokers.sort();
    Cluster {
        id: resp.cluster_id.to_string(),
        controller: resp.controller_id.0,
        brokers,
    }
}

/// The cluster a Metadata response describes.
pub fn from_metadata(resp: &MetadataResponse) -> Cluster {
    let mut brokers: Vec<_> = resp
        .brokers
        .iter()
        .map(|b| {
            let rack = b.rack.as_ref().map(|r| r.to_string());
            (b.node_id.0, b.host.to_string(), b.port, rack)
        })
        .collect();
    brokers.sort();
    Cluster {
        id: resp
            .cluster_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        controller: resp.controller_id.0,
        brokers,
    }
}

/// `cluster status` output: the cluster id and controller, a `Partitions:` line (total,
/// offline = no leader, under-replicated = led but with fewer in-sync replicas than replicas),
/// then per broker (those Metadata lists are alive; a replica's broker it does not list is
/// down) the partitions it leads and the replicas it holds.
pub fn status(meta: &MetadataResponse) -> String {
    let cluster = from_metadata(meta);
    let parts = meta.topics.iter().flat_map(|t| &t.partitions);
    let (mut total, mut offline, mut under) = (0, 0, 0);
    let mut per_broker: std::collections::BTreeMap<i32, (u64, u64)> =
        cluster.brokers.iter().map(|b| (b.0, (0, 0))).collect();
    for p in parts {
        total += 1;
        offline += u64::from(p.leader_id.0 < 0);
        let led = p.leader_id.0 >= 0;
        under += u64::from(led && p.isr_nodes.len() < p.replica_nodes.len());
        if p.leader_id.0 >= 0 {
            per_broker.entry(p.leader_id.0).or_default().0 += 1;
        }
        for r in &p.replica_nodes {
            per_broker.entry(r.0).or_default().1 += 1;
        }
    }
    let controller = if cluster.controller < 0 {
        table::NONE.to_string()
    } else {
        cluster.controller.to_string()
    };
    let mut out = format!(
        "Cluster ID: {}\nController: {controller}\nPartitions: {total} offline: {offline} \
         under-replicated: {under}\n\n",
        table::cell(&cluster.id)
    );
    let rows: Vec<Vec<String>> = per_broker
        .iter()
        .map(|(id, (leads, holds))| {
            let live = cluster.brokers.iter().any(|b| b.0 == *id);
            let state = if live { "alive" } else { "down" };
            vec![
                id.to_string(),
                state.into(),
                leads.to_string(),
                holds.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["BROKER", "STATE", "LEADERS", "REPLICAS"],
        &rows,
    ));
    out
}

/// `cluster info` output: `Cluster ID:` and `Controller:` lines, the brokers table, then the
/// API table (name, key, min and max version), each after a blank line.
pub fn render(cluster: &Cluster, apis: &[(i16, i16, i16)]) -> String {
    let id = table::cell(&cluster.id);
    let controller = if cluster.controller < 0 {
        table::NONE.to_string()
    } else {
        cluster.controller.to_string()
    };
    let mut out = format!("Cluster ID: {id}\nController: {controller}\n\n");
    let brokers: Vec<Vec<String>> = cluster
        .brokers
        .iter()
        .map(|(id, host, port, rack)| {
            vec![
                id.to_string(),
                host.clone(),
                port.to_string(),
                rack.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["BROKER", "HOST", "PORT", "RACK"],
        &brokers,
    ));
    out.push('\n');
    let mut apis = apis.to_vec();
    apis.sort_unstable();
    let rows: Vec<Vec<String>> = apis
        .iter()
        .map(|&(key, min, max)| {
            let name = ApiKey::try_from(key).map_or_else(|_| String::new(), |k| format!("{k:?}"));
            vec![name, key.to_string(), min.to_string(), max.to_string()]
        })
        .collect();
    out.push_str(&table::render(&["API", "KEY", "MIN", "MAX"], &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::protocol::StrBytes;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    #[test]
    fn status_counts_leaders_replicas_and_unhealthy_partitions() {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponsePartition as P, MetadataResponseTopic as T,
        };
        let part = |leader: i32, replicas: &[i32], isr: &[i32]| {
            P::default()
                .with_leader_id(BrokerId(leader))
                .with_replica_nodes(replicas.iter().map(|&b| BrokerId(b)).collect())
                .with_isr_nodes(isr.iter().map(|&b| BrokerId(b)).collect())
        };
        let md = MetadataResponse::default()
            .with_cluster_id(Some(s("abc")))
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![
                MetadataResponseBroker::default().with_node_id(BrokerId(1)),
                MetadataResponseBroker::default().with_node_id(BrokerId(2)),
            ])
            .with_topics(vec![T::default().with_partitions(vec![
                part(1, &[1], &[1]),
                part(2, &[2, 1], &[2]),
                part(-1, &[3], &[]),
            ])]);
        let out = status(&md);
        assert!(
            out.contains("Partitions: 3 offline: 1 under-replicated: 1\n"),
            "{out}"
        );
        let rows: Vec<Vec<&str>> = out
            .lines()
            .skip_while(|l| !l.starts_with("BROKER"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[1], ["1", "alive", "1", "2"]);
        assert_eq!(rows[2], ["2", "alive", "1", "1"]);
        assert_eq!(rows[3], ["3", "down", "0", "1"]);
    }

    #[test]
    fn both_sources_give_the_same_cluster() {
        let dc = DescribeClusterResponse::default()
            .with_cluster_id(s("abc"))
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(2))
                    .with_host(s("h2"))
                    .with_port(9093)
                    .with_rack(Some(s("r1"))),
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(1))
                    .with_host(s("h1"))
                    .with_port(9092),
            ]);
        let md = MetadataResponse::default()
            .with_cluster_id(Some(s("abc")))
            .with_controller_id(BrokerId(1))
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(s("h1"))
                    .with_port(9092),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host(s("h2"))
                    .with_port(9093)
                    .with_rack(Some(s("r1"))),
            ]);
        let a = from_describe_cluster(&dc);
        assert_eq!(a, from_metadata(&md));
        assert_eq!(a.brokers[0].0, 1);
    }

    #[test]
    fn info_prints_ids_brokers_and_apis() {
        let cluster = Cluster {
            id: "abc".into(),
            controller: 1,
            brokers: vec![(1, "127.0.0.1".into(), 9092, None)],
        };
        let out = render(&cluster, &[(3, 0, 12), (0, 0, 11), (999, 0, 1)]);
        assert_eq!(
            out,
            "Cluster ID: abc\nController: 1\n\n\
             BROKER  HOST       PORT  RACK\n\
             1       127.0.0.1  9092  -\n\n\
             API       KEY  MIN  MAX\n\
             Produce   0    0    11\n\
             Metadata  3    0    12\n\
             -         999  0    1\n"
        );
        let none = render(&Cluster::default().with_controller(-1), &[]);
        assert!(none.starts_with("Cluster ID: -\nController: -\n"), "{none}");
    }

    impl Cluster {
        fn with_controller(mut self, c: i32) -> Self {
            self.controller = c;
            self
        }
    }
}

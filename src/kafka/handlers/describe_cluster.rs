//! DescribeCluster (key 60): the cluster id, the brokers and the controller. A single broker
//! is the only broker and the controller; in a cluster, the live brokers with their
//! advertised addresses and the metadata leader (-1 while there is none).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use super::Call;

use crate::metadata::BrokerAddr;
use crate::shard::Shard;

/// Answers with the cluster id, the brokers and the controller.
pub async fn handle(
    s: Rc<Shard>,
    _req: DescribeClusterRequest,
    _call: &Call<'_>,
) -> Option<DescribeClusterResponse> {
    let c = &s.config;
    let broker = |id: i32, host: &str, port: i32| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(str_bytes(host))
            .with_port(port)
    };
    let snap = s.metadata();
    let (brokers, controller) = match &snap.cluster {
        None => (
            vec![broker(c.node_id, &c.advertised_host, c.advertised_port)],
            c.node_id,
        ),
        Some(cluster) => {
            let me = BrokerAddr {
                host: c.advertised_host.clone(),
                port: u16::try_from(c.advertised_port).unwrap_or(0),
                alive: true,
            };
            let list = cluster.live_brokers(&me).into_iter();
            let list = list.map(|(id, b)| broker(id, &b.host, i32::from(b.port)));
            (list.collect(), cluster.controller.unwrap_or(-1))
        }
    };
    Some(
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(&s.cluster_id))
            .with_controller_id(BrokerId(controller))
            .with_brokers(brokers),
    )
}

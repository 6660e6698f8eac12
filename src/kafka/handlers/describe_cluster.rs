//! DescribeCluster (key 60): this single broker, which is also the controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use super::Call;

use crate::shard::Shard;

/// Answers with the cluster id and this broker, as the only broker and the controller.
pub async fn handle(
    s: Rc<Shard>,
    _req: DescribeClusterRequest,
    _call: &Call<'_>,
) -> Option<DescribeClusterResponse> {
    let c = &s.config;
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(c.node_id))
        .with_host(str_bytes(&c.advertised_host))
        .with_port(c.advertised_port);
    Some(
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(&s.cluster_id))
            .with_controller_id(BrokerId(c.node_id))
            .with_brokers(vec![broker]),
    )
}

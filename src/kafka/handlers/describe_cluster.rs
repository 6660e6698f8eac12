//! DescribeCluster (key 60): the cluster id, the brokers and the controller. A single broker
//! is the only broker and the controller; in a cluster, the live brokers with their
//! advertised addresses and the metadata leader (-1 while there is none).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use super::Call;

use crate::shard::Shard;

/// Answers with the cluster id, the brokers and the controller.
pub async fn handle(
    s: Rc<Shard>,
    _req: DescribeClusterRequest,
    _call: &Call<'_>,
) -> Option<DescribeClusterResponse> {
    let (list, controller) = s.client_brokers(&s.metadata());
    let brokers = list.into_iter().map(|(id, b)| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(str_bytes(&b.host))
            .with_port(i32::from(b.port))
    });
    Some(
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(&s.cluster_id))
            .with_controller_id(BrokerId(controller))
            .with_brokers(brokers.collect()),
    )
}

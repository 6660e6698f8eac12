//! The tests' Kafka client: `shardlog::client::Client` with every failure turned into a panic
//! (a test wants the response or a loud stop), plus raw-byte helpers for bad-input tests.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use shardlog::client::{self, Options};

pub struct Client(client::Client);

impl Client {
    pub fn connect(port: u16) -> Client {
        let opts = Options {
            client_id: "shardlog-tests".to_string(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        };
        Client(client::Client::connect(&format!("127.0.0.1:{port}"), &opts).unwrap())
    }

    pub fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, req: &Req) -> i32 {
        self.0.send(api, version, req).unwrap()
    }

    /// Reads one response frame; None if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        self.0.read_frame().ok()
    }

    pub fn recv<Resp: Decodable>(&mut self, api: ApiKey, version: i16, corr: i32) -> Resp {
        self.0.recv(api, version, corr).unwrap()
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.0.call(api, version, req).unwrap()
    }

    /// Produce v9 with acks=all of one batch to `topic`/`part`: (error code, base offset).
    pub fn produce_one(&mut self, topic: &str, part: i32, batch: Bytes) -> (i16, i64) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(part)
                    .with_records(Some(batch))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 9, &req);
        let r = &resp.responses[0].partition_responses[0];
        (r.error_code, r.base_offset)
    }

    /// Fetch v11 of `topic`/`part` from `offset` without waiting (1 MiB per request, 64 KiB
    /// for the partition): the partition's answer.
    pub fn fetch_one(&mut self, topic: &str, part: i32, offset: i64) -> PartitionData {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(part)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(64 << 10)])]);
        let mut resp: FetchResponse = self.call(ApiKey::Fetch, 11, &req);
        resp.responses.swap_remove(0).partitions.swap_remove(0)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.0.stream_mut().write_all(bytes);
    }

    /// True when the broker closed the connection (EOF) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.stream_mut().read(&mut b), Ok(0) | Err(_))
    }
}

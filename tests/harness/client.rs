//! The tests' Kafka client: `shardlog::client::Client` with every failure turned into a panic
//! (a test wants the response or a loud stop), plus raw-byte helpers for bad-input tests.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
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

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.0.stream_mut().write_all(bytes);
    }

    /// True when the broker closed the connection (EOF) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.stream_mut().read(&mut b), Ok(0) | Err(_))
    }
}

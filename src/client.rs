//! A tiny blocking Kafka client: one TCP connection, requests encoded with the protocol crate,
//! responses read back in order. It exists for the admin CLI (`src/cli/`) and the end-to-end
//! tests, which both want to speak the wire protocol to a running broker without an async
//! runtime or a full client library. It does no retries, no pooling and no metadata caching;
//! every failure is a [`ClientError`] for the caller to report.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest response frame we accept: a lying size prefix must not make us allocate gigabytes.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// The ApiVersions version we ask with (its response header is always v0).
const API_VERSIONS_VERSION: i16 = 3;

/// Why a connection or a request failed. Nothing is retried here; after a timeout part of a
/// response may still be on its way, so the connection is out of step and should be dropped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address (HOST:PORT) did not resolve; carries it and the resolver's error.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, io::Error),
    /// No resolved address accepted a connection within the connect timeout; carries the
    /// address and the last address's error.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, io::Error),
    /// A read or write took longer than [`Options::read_timeout`].
    #[error("timed out waiting for the broker")]
    Timeout,
    /// The broker closed or reset the connection (EOF, reset, broken pipe).
    #[error("the broker closed the connection")]
    Closed,
    /// Any other socket error.
    #[error("connection error: {0}")]
    Io(io::Error),
    /// A response's size prefix is below 4 or above [`RESPONSE_BYTES_MAX`]; carries the size.
    #[error("response frame of {0} bytes is out of bounds")]
    FrameSize(i64),
    /// The request does not encode at that version (a field the version lacks, or over 2 GiB).
    #[error("encoding {api:?} v{version}: {reason}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version it was encoded at.
        version: i16,
        /// The encoder's complaint.
        reason: String,
    },
    /// The response frame does not decode as `api`'s response at that version.
    #[error("decoding {api:?} v{version} response: {reason}")]
    Decode {
        /// The request's API.
        api: ApiKey,
        /// The version the request was sent at (and the response decoded at).
        version: i16,
        /// The decoder's complaint.
        reason: String,
    },
    /// The next response answers another request than the one awaited (responses come in
    /// order, so a request was sent without its response being read).
    #[error("response has correlation id {got}, expected {expected}")]
    Correlation {
        /// The correlation id of the request awaited.
        expected: i32,
        /// The correlation id the response carries.
        got: i32,
    },
    /// The broker answered ApiVersions with this error code.
    #[error("ApiVersions failed with error code {0}")]
    ApiVersions(i16),
    /// No version of `api` is both in `lo..=hi` and served by the broker.
    #[error("the broker does not support {api:?} versions {lo}-{hi}{}", broker_range(.broker))]
    Unsupported {
        /// The API asked for.
        api: ApiKey,
        /// The lowest version the caller can encode.
        lo: i16,
        /// The highest version the caller can encode.
        hi: i16,
        /// The (min, max) versions the broker serves, `None` when it does not serve `api`.
        broker: Option<(i16, i16)>,
    },
}

fn broker_range(broker: &Option<(i16, i16)>) -> String {
    match broker {
        Some((lo, hi)) => format!(" (it serves {lo}-{hi})"),
        None => " (it does not serve this API)".to_string(),
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ClientError::Closed,
            _ => ClientError::Io(e),
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// The client id every request's header carries (the broker logs it; groups record it).
    pub client_id: String,
    /// How long to wait for each resolved address to accept the connection.
    pub connect_timeout: Duration,
    /// Also used as the write timeout.
    pub read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_id: "shardlog-cli".to_string(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// One connection to a broker.
pub struct Client {
    stream: TcpStream,
    client_id: StrBytes,
    corr: i32,
    /// (API key, min, max) the broker serves, once [`Client::negotiate`] ran.
    versions: Option<Vec<(i16, i16, i16)>>,
}

impl Client {
    /// Connects to `addr` (HOST:PORT), trying each resolved address in turn.
    pub fn connect(addr: &str, opts: &Options) -> Result<Client, ClientError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ClientError::Resolve(addr.to_string(), e))?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, opts.connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(opts.read_timeout))?;
                    stream.set_write_timeout(Some(opts.read_timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(Client {
                        stream,
                        client_id: StrBytes::from_string(opts.client_id.clone()),
                        corr: 0,
                        versions: None,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(ClientError::Connect(addr.to_string(), last))
    }

    /// The socket, for callers that need raw access (tests sending malformed bytes).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Encodes and sends one request; returns its correlation id.
    pub fn send<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<i32, ClientError> {
        self.corr = self.corr.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(self.client_id.clone()));
        let encode_err = |e: anyhow::Error| ClientError::Encode {
            api,
            version,
            reason: e.to_string(),
        };
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, api.request_header_version(version))
            .map_err(encode_err)?;
        req.encode(&mut frame, version).map_err(encode_err)?;
        let len = i32::try_from(frame.len() - 4).map_err(|_| ClientError::Encode {
            api,
            version,
            reason: "request larger than 2 GiB".into(),
        })?;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&frame)?;
        Ok(self.corr)
    }

    /// Reads one response frame (without its size prefix).
    pub fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > RESPONSE_BYTES_MAX {
            return Err(ClientError::FrameSize(i64::from(len)));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Reads the response to the request with correlation id `corr` (responses come in order).
    pub fn recv<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        corr: i32,
    ) -> Result<Resp, ClientError> {
        let mut frame = self.read_frame()?;
        let decode_err = |e: anyhow::Error| ClientError::Decode {
            api,
            version,
            reason: e.to_string(),
        };
        let header = ResponseHeader::decode(&mut frame, response_header_version(api, version))
            .map_err(decode_err)?;
        if header.correlation_id != corr {
            return Err(ClientError::Correlation {
                expected: corr,
                got: header.correlation_id,
            });
        }
        Resp::decode(&mut frame, version).map_err(decode_err)
    }

    /// Sends a request and waits for its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, ClientError> {
        let corr = self.send(api, version, req)?;
        self.recv(api, version, corr)
    }

    /// Asks the broker which API versions it serves (ApiVersions) and remembers the answer
    /// for [`Client::version`].
    pub fn negotiate(&mut self) -> Result<(), ClientError> {
        let resp: ApiVersionsResponse = self.call(
            ApiKey::ApiVersions,
            API_VERSIONS_VERSION,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("shardlog"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))),
        )?;
        if resp.error_code != 0 {
            return Err(ClientError::ApiVersions(resp.error_code));
        }
        self.versions = Some(
            resp.api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version))
                .collect(),
        );
        Ok(())
    }

    /// Every (API key, min, max) the broker serves, as its ApiVersions answer listed them
    /// (negotiating first if this connection has not yet).
    pub fn served(&mut self) -> Result<&[(i16, i16, i16)], ClientError> {
        if self.versions.is_none() {
            self.negotiate()?;
        }
        Ok(self.versions.as_deref().unwrap_or_default())
    }

    /// The highest version of `api` in `lo..=hi` that the broker serves (negotiating first if
    /// this connection has not yet).
    pub fn version(&mut self, api: ApiKey, lo: i16, hi: i16) -> Result<i16, ClientError> {
        if self.versions.is_none() {
            self.negotiate()?;
        }
        let broker = self
            .versions
            .iter()
            .flatten()
            .find(|(k, _, _)| *k == api as i16)
            .map(|&(_, min, max)| (min, max));
        pick_version(lo, hi, broker).ok_or(ClientError::Unsupported {
            api,
            lo,
            hi,
            broker,
        })
    }
}

/// ApiVersions answers with a v0 header whatever the request version (KIP-511), so that a
/// client asking with too new a version can still read the error.
fn response_header_version(api: ApiKey, version: i16) -> i16 {
    if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    }
}

/// The highest version both sides speak: ours are `lo..=hi`, the broker's `broker`.
pub fn pick_version(lo: i16, hi: i16, broker: Option<(i16, i16)>) -> Option<i16> {
    let (min, max) = broker?;
    let v = hi.min(max);
    (v >= lo.max(min)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        assert_eq!(pick_version(2, 7, Some((0, 9))), Some(7));
        assert_eq!(pick_version(2, 7, Some((0, 5))), Some(5));
        assert_eq!(pick_version(2, 7, Some((3, 9))), Some(7));
        assert_eq!(pick_version(2, 7, Some((8, 9))), None);
        assert_eq!(pick_version(2, 7, Some((0, 1))), None);
        assert_eq!(pick_version(2, 7, None), None);
    }

    #[test]
    fn api_versions_header_is_v0() {
        assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
        assert_eq!(response_header_version(ApiKey::Metadata, 12), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
    }

    #[test]
    fn unsupported_error_names_both_ranges() {
        let e = ClientError::Unsupported {
            api: ApiKey::ListGroups,
            lo: 0,
            hi: 5,
            broker: None,
        };
        assert_eq!(
            e.to_string(),
            "the broker does not support ListGroups versions 0-5 (it does not serve this API)"
        );
    }

    #[test]
    fn connect_to_a_closed_port_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Client::connect(&format!("127.0.0.1:{port}"), &Options::default());
        assert!(matches!(err, Err(ClientError::Connect(..))));
        let err = Client::connect("no-port-here", &Options::default());
        assert!(matches!(err, Err(ClientError::Resolve(..))));
    }
}

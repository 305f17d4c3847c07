//! A raw Kafka connection for tests that must see the wire: one request
//! frame encoded with kafka-protocol, one answer frame read back and
//! decoded at the version asked (what the proxy really sent, not what a
//! client library made of it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::indexmap::IndexMap;
use cutover_kafka::kafka_protocol::messages::{ApiKey, RequestHeader};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use cutover_kafka::{decode_response_body, encode_request, response_correlation_id};

/// How long one answer may take.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// One client connection speaking raw frames.
pub struct RawKafka {
    stream: TcpStream,
    next_id: i32,
}

impl RawKafka {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> RawKafka {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
        stream.set_read_timeout(Some(ANSWER_DEADLINE)).unwrap();
        RawKafka { stream, next_id: 0 }
    }

    /// Sends `body` as `key` v`version` and decodes the answer at that
    /// version, checking its correlation id.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let frame = self.send(key, version, body);
        decode_response_body(&frame, key as i16, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version} answer: {e}"))
    }

    /// Sends `body` as `key` v`version` and returns the answer frame
    /// (length prefix included).
    pub fn send<Req: Encodable>(&mut self, key: ApiKey, version: i16, body: &Req) -> Bytes {
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.next_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let frame = encode_request(&header, body).expect("encode the request");
        let answer = self.exchange(&frame);
        assert_eq!(response_correlation_id(&answer), Some(self.next_id));
        answer
    }

    /// Writes `frame` as is and reads one answer frame.
    pub fn exchange(&mut self, frame: &[u8]) -> Bytes {
        self.stream.write_all(frame).expect("send the request");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("read an answer");
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap()];
        self.stream
            .read_exact(&mut body)
            .expect("read the answer body");
        Bytes::from([len.to_vec(), body].concat())
    }

    /// Writes `frame` and expects the connection to close (EOF or reset)
    /// within `deadline`, with no answer first; panics on a hang.
    pub fn closed_after(mut self, frame: &[u8], deadline: Duration) {
        self.stream.set_read_timeout(Some(deadline)).unwrap();
        self.stream.write_all(frame).expect("send the request");
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

/// One v2 record batch of plain (non-idempotent) records with `values`.
pub fn record_batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::try_from(i).unwrap(),
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode a batch");
    buf.freeze()
}

//! Redis rows of `alloc_per_request`: SET and GET of a 100-byte value
//! through a `source`-state keyspace, one at a time on one connection.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::common::{Redis, Scratch};
use super::support::{Config, free_port};
use super::{Row, measure, start_proxy};

pub fn run(n: u64) -> Vec<Row> {
    let scratch = Scratch::new("cutover-bench-alloc-redis-");
    let source = Redis::start(&scratch.path, "redis-source", &[]);
    let target = Redis::start(&scratch.path, "redis-target", &[]);
    let listen = free_port();
    let config = Config::new().append(&format!(
        "clusters:\n\
         \x20 - {{ name: old, protocol: redis, endpoints: [\"127.0.0.1:{}\"] }}\n\
         \x20 - {{ name: new, protocol: redis, endpoints: [\"127.0.0.1:{}\"] }}\n\
         migrations:\n\
         \x20 - name: cache\n\
         \x20   protocol: redis\n\
         \x20   listen: 127.0.0.1:{listen}\n\
         \x20   source: old\n\
         \x20   target: new\n\
         \x20   topics: [ {{ name: rest, match: \"*\" }} ]\n\
         \x20   redis: {{ backfill_on_enter: false }}\n",
        source.port, target.port
    ));
    start_proxy(&config.write(), listen);
    let mut client = TcpStream::connect(("127.0.0.1", listen)).expect("connect to the proxy");
    client.set_nodelay(true).expect("nodelay");
    let value = "v".repeat(100);
    let mut answer = vec![0u8; 256];
    let set = measure("Redis", "SET 100 B", n, |i| {
        let key = format!("key:{}", i % 1000);
        let frame = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        client.write_all(frame.as_bytes()).expect("send SET");
        read_reply(&mut client, &mut answer, b"+OK\r\n".len());
    });
    let get = measure("Redis", "GET 100 B", n, |i| {
        let key = format!("key:{}", i % 1000);
        let frame = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
        client.write_all(frame.as_bytes()).expect("send GET");
        // `$100\r\n` + value + `\r\n`
        read_reply(&mut client, &mut answer, 6 + 100 + 2);
    });
    drop(scratch);
    vec![set, get]
}

/// Reads exactly `len` bytes of a reply whose length the caller knows.
fn read_reply(client: &mut TcpStream, buf: &mut [u8], len: usize) {
    client
        .read_exact(&mut buf[..len])
        .expect("read the proxy's answer");
}

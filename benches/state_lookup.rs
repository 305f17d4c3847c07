//! Per-request routing cost: what a Redis session does for every command
//! before it touches a socket.
//!
//! A session resolves the command's key to its keyspace (first matching
//! pattern, in config order) and reads that keyspace's state (one atomic
//! load). Target: well under 100 ns for the whole thing.
//!
//! Keyspaces, in config order: `session:*`, `cart:*`, `user:[0-9]*`, `*`.
//!
//! | id                      | key                  | work                                        |
//! |-------------------------|----------------------|---------------------------------------------|
//! | `lookup/prefix_hit_first` | `session:8f3a…`    | 1 prefix compare, then the state load       |
//! | `lookup/glob`           | `user:1234567`       | 2 prefix misses, 1 glob match, state load   |
//! | `lookup/catch_all_last` | `product:42:reviews` | 2 prefix misses, 1 glob miss, `*`, state load |
//! | `state/load`            | (resolved handle)    | the state load alone                        |
//!
//! Run: `cargo bench --bench state_lookup -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use cutover::migration::{MigrationHandle, State, Unobserved};

const CONFIG: &str = r#"
clusters:
  - { name: old, protocol: redis, endpoints: ["127.0.0.1:6379"] }
  - { name: new, protocol: redis, endpoints: ["127.0.0.1:6380"] }
migrations:
  - name: cache
    protocol: redis
    listen: 127.0.0.1:7379
    source: old
    target: new
    topics:
      - { name: sessions, match: "session:*" }
      - { name: carts, match: "cart:*" }
      - { name: users, match: "user:[0-9]*" }
      - { name: rest, match: "*" }
"#;

fn migration() -> MigrationHandle {
    let config = match cutover::config::parse(CONFIG) {
        Ok(config) => config,
        Err(errors) => panic!("bench config is invalid: {errors:?}"),
    };
    let migration = config.migrations.into_iter().next().expect("one migration");
    MigrationHandle::new(
        &migration.spec(),
        Arc::new(Unobserved),
        |topic| match topic {
            "sessions" => (State::DualWrite, 3),
            "users" => (State::DualRead, 2),
            _ => (State::Source, 0),
        },
    )
}

/// Resolve then load, as a session does per request.
#[inline]
fn route(migration: &MigrationHandle, key: &[u8]) -> Option<State> {
    migration.keyspace_for(key).map(|handle| handle.state())
}

fn bench(c: &mut Criterion) {
    let migration = migration();

    // The keys must land where the ids say, or the numbers mean nothing.
    let expect = |key: &[u8], name: &str| {
        let handle = migration.keyspace_for(key).expect("catch-all matches");
        assert_eq!(&*handle.name, name, "{}", String::from_utf8_lossy(key));
    };
    expect(b"session:8f3a2c1e9b", "sessions");
    expect(b"user:1234567", "users");
    expect(b"product:42:reviews", "rest");

    let mut lookup = c.benchmark_group("lookup");
    lookup.bench_function("prefix_hit_first", |b| {
        b.iter(|| route(black_box(&migration), black_box(b"session:8f3a2c1e9b")));
    });
    lookup.bench_function("catch_all_last", |b| {
        b.iter(|| route(black_box(&migration), black_box(b"product:42:reviews")));
    });
    lookup.bench_function("glob", |b| {
        b.iter(|| route(black_box(&migration), black_box(b"user:1234567")));
    });
    lookup.finish();

    let handle = migration
        .keyspace_for(b"session:1")
        .expect("sessions keyspace")
        .clone();
    let mut state = c.benchmark_group("state");
    state.bench_function("load", |b| b.iter(|| black_box(&handle).state()));
    state.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

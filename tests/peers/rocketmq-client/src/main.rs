//! A RocketMQ client for cutover's tests and benchmarks, built on the real
//! `rocketmq-client-rust` 1.0.0 (a separate crate so its ~13 min build is
//! cached by `tests/peers/install.sh rocketmq`, not repeated per test run).
//!
//! ```text
//! cutover-rocketmq-client produce --namesrv A --topic T --group G --id P --out FILE
//!     [--count N] [--stop-file F] [--interval-ms M] [--poll-ms MS ≥ 10000]
//! cutover-rocketmq-client consume --namesrv A --topic T --group G --out FILE --stop-file F
//!     [--poll-ms MS ≥ 10000]
//! cutover-rocketmq-client bench --namesrv A --topic T --group G --count N --concurrency C
//! ```
//!
//! `produce` sends bodies `P:SEQ` (SEQ from 0) and appends each
//! acknowledged body to FILE as a line; `consume` appends every delivered
//! body to FILE. Both run until their count is reached or the stop file
//! exists, then print one JSON summary line. `bench` sends N messages from
//! C concurrent senders and prints msgs/s and latency quantiles as JSON.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientConfig, ClientError, ClientResult, ClientRuntime, ClientRuntimeConfig,
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> (String, Args) {
        let mut it = std::env::args().skip(1);
        let mode = it.next().unwrap_or_default();
        let mut map = HashMap::new();
        while let Some(k) = it.next() {
            let v = it.next().unwrap_or_else(|| fail(&format!("{k} needs a value")));
            map.insert(k.trim_start_matches("--").to_owned(), v);
        }
        (mode, Args(map))
    }
    fn get(&self, k: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| fail(&format!("--{k} is required")))
    }
    fn num(&self, k: &str, default: u64) -> u64 {
        self.0.get(k).map_or(default, |v| v.parse().unwrap_or_else(|_| fail(&format!("--{k} must be a number"))))
    }
    fn opt(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }
}

fn fail(why: &str) -> ! {
    eprintln!("cutover-rocketmq-client: {why}");
    std::process::exit(2)
}

fn config(args: &Args) -> ClientConfig {
    // The client refuses route polls and heartbeats below 10 s; offsets may
    // be persisted every second.
    let poll = u32::try_from(args.num("poll-ms", 10_000)).unwrap_or(10_000);
    ClientConfig {
        namesrv_addr: Some(args.get("namesrv").into()),
        poll_name_server_interval: poll,
        heartbeat_broker_interval: poll,
        persist_consumer_offset_interval: 1000,
        vip_channel_enabled: false,
        ..Default::default()
    }
}

struct Runtime {
    owner: RuntimeOwner,
    client: Arc<ClientRuntime>,
    telemetry: rocketmq_observability::TelemetryRuntimeGuard,
}

impl Runtime {
    fn new() -> ClientResult<Runtime> {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: "cutover-rocketmq-client".into(),
            ..Default::default()
        })
        .expect("runtime configuration is valid")
        .build()
        .map_err(|e| ClientError::internal("create client runtime", e))?;
        let telemetry = rocketmq_observability::install_global(
            &rocketmq_observability::TelemetryBootstrapConfig::default(),
        )
        .map_err(|e| ClientError::internal("initialize telemetry", e))?;
        let client = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )?;
        Ok(Runtime {
            owner,
            client,
            telemetry,
        })
    }

    async fn shutdown(self) {
        let _ = self.client.shutdown().await;
        let _ = self.owner.shutdown_tasks().await;
        let _ = self.owner.shutdown_background();
        let _ = self.telemetry.shutdown();
    }
}

fn open_out(path: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("open {path}: {e}")))
}

fn stopped(stop: &Option<PathBuf>) -> bool {
    stop.as_ref().is_some_and(|p| p.exists())
}

async fn produce(rt: &Runtime, args: &Args) -> ClientResult<serde_json::Value> {
    let topic = args.get("topic");
    let id = args.get("id");
    let count = args.num("count", u64::MAX);
    let interval = Duration::from_millis(args.num("interval-ms", 0));
    let stop = args.opt("stop-file").map(PathBuf::from);
    let mut out = open_out(&args.get("out"));
    let mut producer = DefaultMQProducer::builder(rt.client.clone())
        .client_config(config(args))
        .producer_group(args.get("group"))
        .build();
    producer.start().await?;
    let (mut acked, mut failed, mut errors) = (0u64, 0u64, Vec::new());
    let mut seq = 0u64;
    while seq < count && !stopped(&stop) {
        let body = format!("{id}:{seq}");
        let message = Message::builder()
            .topic(topic.clone())
            .body_slice(body.as_bytes())
            .build_unchecked();
        match producer.send_with_timeout(message, 3000).await {
            Ok(Some(_)) => {
                acked += 1;
                let _ = writeln!(out, "{body}");
                let _ = out.flush();
            }
            Ok(None) => failed += 1,
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e.to_string());
                }
            }
        }
        seq += 1;
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    producer.shutdown().await;
    Ok(serde_json::json!({"mode": "produce", "id": id, "sent": seq, "acked": acked, "failed": failed, "errors": errors}))
}

struct Recorder {
    out: Mutex<std::fs::File>,
    received: AtomicU64,
}

impl MessageListenerConcurrently for Recorder {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        for m in msgs {
            let body = m.body().unwrap_or_default();
            let _ = writeln!(out, "{}", String::from_utf8_lossy(&body));
            self.received.fetch_add(1, Ordering::Relaxed);
        }
        let _ = out.flush();
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

async fn consume(rt: &Runtime, args: &Args) -> ClientResult<serde_json::Value> {
    let stop = Some(PathBuf::from(args.get("stop-file")));
    let recorder = Arc::new(Recorder {
        out: Mutex::new(open_out(&args.get("out"))),
        received: AtomicU64::new(0),
    });
    let mut consumer = DefaultMQPushConsumer::builder(rt.client.clone())
        .client_config(config(args))
        .consumer_group(args.get("group"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer.subscribe(args.get("topic").as_str(), "*").await?;
    consumer.register_message_listener_concurrently(RecorderRef(recorder.clone()));
    consumer.start().await?;
    println!("{}", serde_json::json!({"mode": "consume", "started": true}));
    while !stopped(&stop) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.shutdown().await;
    Ok(serde_json::json!({"mode": "consume", "received": recorder.received.load(Ordering::Relaxed)}))
}

struct RecorderRef(Arc<Recorder>);

impl MessageListenerConcurrently for RecorderRef {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        self.0.consume_message(msgs, context)
    }
}

async fn bench(rt: &Runtime, args: &Args) -> ClientResult<serde_json::Value> {
    let topic = args.get("topic");
    let count = args.num("count", 10_000);
    let concurrency = args.num("concurrency", 8).max(1);
    let size = usize::try_from(args.num("size", 128)).unwrap_or(128);
    let mut producer = DefaultMQProducer::builder(rt.client.clone())
        .client_config(config(args))
        .producer_group(args.get("group"))
        .build();
    producer.start().await?;
    // Warm the route and connections.
    let warm = Message::builder().topic(topic.clone()).body_slice(b"warm").build_unchecked();
    producer.send_with_timeout(warm, 5000).await?;
    let producer = Arc::new(producer);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (producer, next, topic) = (producer.clone(), next.clone(), topic.clone());
        let body = vec![b'x'; size];
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let m = Message::builder().topic(topic.clone()).body_slice(&body).build_unchecked();
                let t = Instant::now();
                match producer.send_with_timeout(m, 5000).await {
                    Ok(Some(_)) => latencies.push(t.elapsed()),
                    _ => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await.expect("sender task");
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let q = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(serde_json::json!({
        "mode": "bench", "sent": latencies.len(), "failed": failed,
        "msgs_per_s": latencies.len() as f64 / elapsed, "p50_ms": q(0.5), "p99_ms": q(0.99),
    }))
}

#[tokio::main]
async fn main() {
    let (mode, args) = Args::parse();
    let rt = Runtime::new().unwrap_or_else(|e| fail(&format!("client runtime: {e}")));
    let result = match mode.as_str() {
        "produce" => produce(&rt, &args).await,
        "consume" => consume(&rt, &args).await,
        "bench" => bench(&rt, &args).await,
        other => fail(&format!("unknown mode {other:?}: produce, consume or bench")),
    };
    rt.shutdown().await;
    match result {
        Ok(summary) => println!("{summary}"),
        Err(e) => fail(&format!("{mode}: {e}")),
    }
}

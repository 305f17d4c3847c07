"""Load generator of `benches/kafka_compare.rs` (confluent-kafka, librdkafka 2.x).

One phase per invocation, so the bench can time and CPU-account each phase
separately:

    python kafka_load.py '{"phase": "create", "bootstrap": "127.0.0.1:9092", "topic": "t", "partitions": 6}'
    python kafka_load.py '{"phase": "produce", ..., "messages": 200000, "size": 1024, "linger_ms": 5}'
    python kafka_load.py '{"phase": "latency", ..., "rate": 1000, "seconds": 5, "size": 1024}'
    python kafka_load.py '{"phase": "consume", ..., "messages": 200000}'

Every phase is bounded by `deadline_s` (wall seconds from start) and prints
one JSON object as its last stdout line. Timings are taken inside the
script, so interpreter start-up and the first Metadata round trip are not
part of them.
"""

import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ARGS = json.loads(sys.argv[1])
BOOT = ARGS["bootstrap"]
TOPIC = ARGS["topic"]
START = time.monotonic()
DEADLINE = START + float(ARGS.get("deadline_s", 120))


def left():
    return max(0.0, DEADLINE - time.monotonic())


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def create():
    admin = AdminClient({"bootstrap.servers": BOOT})
    futures = admin.create_topics(
        [NewTopic(TOPIC, num_partitions=int(ARGS["partitions"]), replication_factor=1)]
    )
    futures[TOPIC].result(timeout=left())
    # Wait until Metadata shows every partition with a leader.
    while left() > 0:
        md = admin.list_topics(TOPIC, timeout=min(5.0, left()))
        t = md.topics.get(TOPIC)
        if t is not None and t.error is None and len(t.partitions) == int(ARGS["partitions"]):
            if all(p.leader >= 0 for p in t.partitions.values()):
                return {"partitions": len(t.partitions)}
        time.sleep(0.1)
    raise SystemExit("topic not ready before the deadline")


def producer(linger_ms, on_delivery):
    return Producer(
        {
            "bootstrap.servers": BOOT,
            "acks": "all",
            "linger.ms": linger_ms,
            "on_delivery": on_delivery,
        }
    )


def produce():
    n, size = int(ARGS["messages"]), int(ARGS["size"])
    payload = os.urandom(size)
    latencies, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            latencies.append(msg.latency())

    p = producer(int(ARGS.get("linger_ms", 5)), on_delivery)
    p.list_topics(TOPIC, timeout=min(10.0, left()))  # connections and metadata up front
    t0 = time.perf_counter()
    sent = 0
    while sent < n and left() > 0:
        try:
            p.produce(TOPIC, payload)
            sent += 1
            if sent % 1000 == 0:
                p.poll(0)
        except BufferError:  # local queue full: let deliveries drain it
            p.poll(0.005)
    remaining = p.flush(left())
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "sent": sent,
        "delivered": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "undelivered": remaining,
        "seconds": elapsed,
        "bytes": len(latencies) * size,
        "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
    }


def latency():
    """Paced produce (no queueing in the client): the round trip of one
    acks=all Produce, sent alone (linger.ms=0)."""
    rate, seconds, size = float(ARGS["rate"]), float(ARGS["seconds"]), int(ARGS["size"])
    payload = os.urandom(size)
    latencies, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            latencies.append(msg.latency())

    p = producer(0, on_delivery)
    p.list_topics(TOPIC, timeout=min(10.0, left()))
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        if left() <= 0:
            break
        # poll() returns early once it served a report: loop to the send time.
        wait = t0 + i / rate - time.perf_counter()
        while wait > 0:
            p.poll(wait)
            wait = t0 + i / rate - time.perf_counter()
        p.produce(TOPIC, payload)
        p.poll(0)
    remaining = p.flush(left())
    latencies.sort()
    return {
        "sent": total,
        "delivered": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "undelivered": remaining,
        "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None,
    }


def consume():
    n = int(ARGS["messages"])
    c = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": "kafka-compare-" + TOPIC,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    md = c.list_topics(TOPIC, timeout=min(10.0, left()))
    partitions = sorted(md.topics[TOPIC].partitions)
    t0 = time.perf_counter()
    c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in partitions])
    got, nbytes, errors, last = 0, 0, [], t0
    while got < n and left() > 0:
        for m in c.consume(num_messages=10000, timeout=min(0.5, left())):
            if m.error() is not None:
                errors.append(str(m.error()))
                continue
            got += 1
            nbytes += len(m.value())
            last = time.perf_counter()
    c.close()
    return {
        "consumed": got,
        "bytes": nbytes,
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": last - t0,
    }


PHASES = {"create": create, "produce": produce, "latency": latency, "consume": consume}

if __name__ == "__main__":
    print(json.dumps(PHASES[ARGS["phase"]]()), flush=True)

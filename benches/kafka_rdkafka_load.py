"""librdkafka load of the Kafka comparison bench (benches/kafka_compare.rs).

Runs one phase against one bootstrap address with confluent-kafka (the
peers' venv: librdkafka 2.x) and prints its figures as one JSON line, the
last line of stdout:

  produce BOOTSTRAP TOPIC RECORDS SIZE
      acks=all, enable.idempotence=true, linger.ms=5 (librdkafka's defaults
      otherwise), flat out: RECORDS records of SIZE bytes with no key, one
      pre-built random value. Seconds run from the first produce() to the
      end of flush(); latencies are librdkafka's produce()-to-acknowledgement
      times (Message.latency()) from the delivery callbacks.
      {"delivered", "failed", "first_error", "seconds", "p50_ms", "p99_ms",
       "max_ms"}

  consume BOOTSTRAP TOPIC RECORDS GROUP IDLE_TIMEOUT_MS
      A fresh group from the earliest offset reads RECORDS records. The join
      (subscribe until the first assignment) is timed apart; seconds run
      from the assignment to the last record, as ConsumerPerformance's fetch
      time does. Gives up after IDLE_TIMEOUT_MS without a record.
      {"consumed", "failed", "first_error", "join_ms", "seconds"}

The Python loop is kept cheap (produce() with a poll(0) every POLL_EVERY
records, consume() in batches), but Python's per-record cost still caps the
rate. The cap is the same on every path, so the bench reads the ratio of a
path to direct, not the absolute figure.
"""

import json
import random
import sys
import time

from confluent_kafka import Consumer, Producer

# Records between two poll(0) calls: serves delivery callbacks often enough
# that the local queue (100 000 messages by default) rarely fills, without a
# call per record.
POLL_EVERY = 5000
# How long flush() may wait for the last acknowledgements.
FLUSH_TIMEOUT_S = 120.0
# Records per consume() call: one Python call per batch, not per record.
CONSUME_BATCH = 10000


def percentile(sorted_values, q):
    """The q-quantile (0..1) of an ascending list, nearest rank; None if empty."""
    if not sorted_values:
        return None
    rank = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values))) - 1))
    return sorted_values[rank]


def produce(bootstrap, topic, records, size):
    latencies = []
    failed = [0]
    first_error = [None]

    def on_delivery(err, msg):
        if err is None:
            latencies.append(msg.latency())
        else:
            failed[0] += 1
            if first_error[0] is None:
                first_error[0] = str(err)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "on_delivery": on_delivery,
        }
    )
    # One value for every record, as ProducerPerformance does: random
    # uppercase letters, so a compressing path would gain nothing.
    rng = random.Random(0)
    value = bytes(rng.randrange(65, 91) for _ in range(size))
    send, poll = producer.produce, producer.poll

    start = time.monotonic()
    sent = 0
    while sent < records:
        try:
            send(topic, value)
        except BufferError:
            # The local queue is full: serve callbacks while it drains.
            poll(0.001)
            continue
        sent += 1
        if sent % POLL_EVERY == 0:
            poll(0)
    left = producer.flush(FLUSH_TIMEOUT_S)
    seconds = time.monotonic() - start

    ms = sorted(1000.0 * lat for lat in latencies if lat is not None)
    if left and first_error[0] is None:
        first_error[0] = f"{left} records still queued after flush"
    return {
        "delivered": len(latencies),
        "failed": failed[0] + left,
        "first_error": first_error[0],
        "seconds": seconds,
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": ms[-1] if ms else None,
    }


def consume(bootstrap, topic, records, group, idle_timeout_ms):
    assigned_at = []

    def on_assign(consumer, partitions):
        if not assigned_at:
            assigned_at.append(time.monotonic())

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    subscribed = time.monotonic()
    consumer.subscribe([topic], on_assign=on_assign)
    take = consumer.consume

    consumed = 0
    failed = 0
    first_error = None
    last_record = time.monotonic()
    idle_s = idle_timeout_ms / 1000.0
    while consumed < records:
        batch = take(CONSUME_BATCH, 0.5)
        now = time.monotonic()
        if not batch:
            if now - last_record > idle_s:
                break
            continue
        for msg in batch:
            if msg.error() is None:
                consumed += 1
            else:
                failed += 1
                if first_error is None:
                    first_error = str(msg.error())
        last_record = now
    done = time.monotonic()
    consumer.close()

    if not assigned_at:
        return {
            "consumed": consumed,
            "failed": failed,
            "first_error": first_error or "never assigned a partition",
            "join_ms": None,
            "seconds": 0.0,
        }
    # A partial run ends at its last record, not after the idle wait.
    end = done if consumed >= records else last_record
    return {
        "consumed": consumed,
        "failed": failed,
        "first_error": first_error,
        "join_ms": 1000.0 * (assigned_at[0] - subscribed),
        "seconds": max(0.0, end - assigned_at[0]),
    }


def main(argv):
    usage = (
        "usage: kafka_rdkafka_load.py produce BOOTSTRAP TOPIC RECORDS SIZE\n"
        "       kafka_rdkafka_load.py consume BOOTSTRAP TOPIC RECORDS GROUP IDLE_TIMEOUT_MS"
    )
    if len(argv) == 6 and argv[1] == "produce":
        result = produce(argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif len(argv) == 7 and argv[1] == "consume":
        result = consume(argv[2], argv[3], int(argv[4]), argv[5], int(argv[6]))
    else:
        print(usage, file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

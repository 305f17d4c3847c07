// The Java client's share of the splice walk: a producer with the client's
// defaults (idempotent, acks=all, 5 requests in flight) writes
// "java:SEQ" to partition SEQ % PARTITIONS of TOPIC for SECONDS seconds
// while a consumer in GROUP (automatic commits) reads; then the consumer
// reads until every acknowledged record arrived (at most 60 s more).
// Prints one JSON line: what was acknowledged, failed, lost, duplicated,
// reordered, or read at another offset than acknowledged, how often the
// consumer was assigned partitions, the longest wait between two records
// read while the producer ran (and when it ended, epoch ms), and the error
// that ended the consumer early, if one did. Each KEY=VALUE after SECONDS is
// a consumer property (an assignor, group.instance.id, group.protocol), or
// with "producer." before it a producer property. With
// producer.transactional.id the producer writes transactions of
// TXN_RECORDS records and aborts every ABORT_EVERY-th on purpose (values
// "abort:SEQ"); only committed records count as acknowledged, and the
// JSON also counts committed and aborted transactions, transactions that
// failed (and were aborted), and aborted records the consumer read.
// Usage: java -cp 'libs/*' SpliceLoad.java BOOTSTRAP TOPIC GROUP PARTITIONS SECONDS [KEY=VALUE...]
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class SpliceLoad {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int partitions = Integer.parseInt(args[3]);
        long seconds = Long.parseLong(args[4]);
        Map<String, String> acked = new ConcurrentHashMap<>();
        List<String> failed = Collections.synchronizedList(new ArrayList<>());
        AtomicLong sent = new AtomicLong();
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("linger.ms", "5");
        for (int i = 5; i < args.length; i++) {
            if (!args[i].startsWith("producer.")) continue;
            String[] kv = args[i].substring("producer.".length()).split("=", 2);
            p.put(kv[0], kv[1]);
        }
        Thread producer = new Thread(() -> {
            if (p.containsKey("transactional.id")) produceTransactions(p, topic, partitions, seconds, acked, failed, sent);
            else produce(p, topic, partitions, seconds, acked, failed, sent);
        });
        producer.start();

        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", group);
        c.put("auto.offset.reset", "earliest");
        c.put("auto.commit.interval.ms", "300");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        for (int i = 5; i < args.length; i++) {
            if (args[i].startsWith("producer.")) continue;
            String[] kv = args[i].split("=", 2);
            c.put(kv[0], kv[1]);
        }
        AtomicInteger assignments = new AtomicInteger();
        long maxGap = 0, maxGapAt = 0, lastRead = 0;
        String consumerError = "";
        Map<String, String> seenAt = new HashMap<>();
        Map<Integer, Long> lastSeq = new HashMap<>();
        int duplicates = 0, reordered = 0, mismatched = 0, abortedRead = 0;
        List<String> errors = new ArrayList<>();
        List<String> dupSample = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {}
                public void onPartitionsAssigned(Collection<TopicPartition> parts) { assignments.incrementAndGet(); }
            });
            long deadline = System.currentTimeMillis() + seconds * 1000 + 60_000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    if (r.value().startsWith("abort:")) {
                        abortedRead++;
                        continue;
                    }
                    // The topic also carries the other clients' records.
                    if (!r.value().startsWith("java:")) continue;
                    long now = System.currentTimeMillis();
                    if (lastRead > 0 && producer.isAlive() && now - lastRead > maxGap) {
                        maxGap = now - lastRead;
                        maxGapAt = now;
                    }
                    lastRead = now;
                    String where = r.partition() + "@" + r.offset();
                    String before = seenAt.put(r.value(), where);
                    if (before != null) {
                        duplicates++;
                        if (dupSample.size() < 5) dupSample.add(r.value() + " at " + where + ", first at " + before + ", read at " + System.currentTimeMillis());
                    }
                    long seq = Long.parseLong(r.value().split(":")[1]);
                    Long last = lastSeq.put(r.partition(), seq);
                    if (last != null && seq <= last) reordered++;
                    String at = acked.get(r.value());
                    if (at != null && !at.equals(where)) {
                        mismatched++;
                        if (errors.size() < 5) errors.add(r.value() + " acked at " + at + ", read at " + where);
                    }
                }
                if (!producer.isAlive() && seenAt.keySet().containsAll(acked.keySet())) break;
            }
        } catch (KafkaException e) {
            consumerError = e.toString();
        }
        producer.join();
        List<String> lost = new ArrayList<>();
        for (String v : acked.keySet()) if (!seenAt.containsKey(v)) lost.add(v);
        for (String v : seenAt.keySet()) if (ABORTED.contains(v)) abortedRead++;
        System.out.println("{\"sent\":" + sent.get() + ",\"acked\":" + acked.size()
            + ",\"failed\":" + failed.size() + ",\"failed_sample\":" + quote(failed)
            + ",\"consumed\":" + seenAt.size() + ",\"lost\":" + lost.size()
            + ",\"lost_sample\":" + quote(lost.subList(0, Math.min(5, lost.size())))
            + ",\"duplicates\":" + duplicates + ",\"duplicate_sample\":" + quote(dupSample) + ",\"reordered\":" + reordered
            + ",\"offset_mismatch\":" + mismatched + ",\"errors\":" + quote(errors)
            + ",\"assignments\":" + assignments.get() + ",\"max_gap_ms\":" + maxGap
            + ",\"max_gap_at\":" + maxGapAt + ",\"last_read_at\":" + lastRead
            + ",\"consumer_error\":" + json(consumerError)
            + ",\"txn_committed\":" + TXN[0] + ",\"txn_aborted\":" + TXN[1]
            + ",\"txn_failed\":" + TXN[2] + ",\"txn_errors\":" + quote(TXN_ERRORS)
            + ",\"aborted_read\":" + abortedRead + "}");
    }

    static final int TXN_RECORDS = 10, ABORT_EVERY = 4;
    /** Committed, aborted on purpose, failed (then aborted). */
    static final long[] TXN = new long[3];
    static final List<String> TXN_ERRORS = Collections.synchronizedList(new ArrayList<>());
    /** "java:" values of transactions that failed and were aborted. */
    static final Set<String> ABORTED = ConcurrentHashMap.newKeySet();

    static void produceTransactions(Properties p, String topic, int partitions, long seconds,
                                    Map<String, String> acked, List<String> failed, AtomicLong sent) {
        long end = System.currentTimeMillis() + seconds * 1000;
        long seq = 0, txn = 0;
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        producer.initTransactions();
        try {
            while (System.currentTimeMillis() < end) {
                boolean abort = ++txn % ABORT_EVERY == 0;
                Map<String, String> written = new ConcurrentHashMap<>();
                List<String> values = new ArrayList<>();
                try {
                    producer.beginTransaction();
                    for (int i = 0; i < TXN_RECORDS; i++) {
                        String value = (abort ? "abort:" : "java:") + seq;
                        int partition = (int) (seq % partitions);
                        values.add(value);
                        producer.send(new ProducerRecord<>(topic, partition, null, value), (md, e) -> {
                            if (e == null) written.put(value, md.partition() + "@" + md.offset());
                        });
                        seq++;
                        Thread.sleep(3);
                    }
                    if (abort) {
                        producer.abortTransaction();
                        TXN[1]++;
                    } else {
                        producer.commitTransaction();
                        acked.putAll(written);
                        TXN[0]++;
                    }
                } catch (KafkaException e) {
                    TXN[2]++;
                    if (TXN_ERRORS.size() < 5) TXN_ERRORS.add(String.valueOf(e));
                    for (String v : values) if (v.startsWith("java:")) ABORTED.add(v);
                    try {
                        producer.abortTransaction();
                    } catch (KafkaException fatal) {
                        // Fenced or fatal: only a new producer goes on.
                        if (TXN_ERRORS.size() < 5) TXN_ERRORS.add("abort: " + fatal);
                        producer.close(Duration.ZERO);
                        producer = new KafkaProducer<>(p);
                        producer.initTransactions();
                    }
                }
            }
            sent.set(seq);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (KafkaException e) {
            failed.add("transactional producer: " + e);
        } finally {
            producer.close();
        }
    }

    static void produce(Properties p, String topic, int partitions, long seconds,
                        Map<String, String> acked, List<String> failed, AtomicLong sent) {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            long end = System.currentTimeMillis() + seconds * 1000;
            long seq = 0;
            while (System.currentTimeMillis() < end) {
                String value = "java:" + seq;
                int partition = (int) (seq % partitions);
                producer.send(new ProducerRecord<>(topic, partition, null, value), (md, e) -> {
                    if (e != null) failed.add(value + ": " + e);
                    else acked.put(value, md.partition() + "@" + md.offset());
                });
                seq++;
                Thread.sleep(3);
            }
            sent.set(seq);
            producer.flush();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static String quote(List<String> values) {
        StringBuilder out = new StringBuilder("[");
        synchronized (values) {
            for (String v : values) {
                if (out.length() > 1) out.append(',');
                out.append(json(v));
            }
        }
        return out.append(']').toString();
    }

    static String json(String value) {
        return '"' + value.replace("\\", "\\\\").replace("\"", "'").replace("\n", " ") + '"';
    }
}

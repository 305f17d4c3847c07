// Writes and reads a topic's whole log for the history-copy tests, with the
// Java client. Prints one JSON line.
//
// write BOOTSTRAP TOPIC FROM COUNT COMPRESSION [PAD]
//   Sends records FROM..FROM+COUNT-1 with the producer's defaults
//   (idempotent, acks=all) and compression.type COMPRESSION: key "k<i%50>",
//   value "v<i>" (then PAD dots), header "seq"=i, and a timestamp of its own (an hour before
//   the start, + i: old enough to differ from any time a copy could stamp,
//   recent enough for the topic's retention), so a copy that changes any of
//   them is seen. Prints {"acked":N,"errors":N}.
// group BOOTSTRAP TOPIC GROUP
//   Reads TOPIC as consumer group GROUP from its committed offsets (the
//   earliest where it has none) up to the end offsets asked once assigned,
//   commits, and prints how many records it read and the first offset read
//   per partition: {"count":N,"first":{"0":OFFSET,...}}.
// read BOOTSTRAP TOPIC ISOLATION
//   Assigns every partition, reads from the log start to the end offsets
//   asked at the start (read_committed or read_uncommitted), and prints per
//   partition the count, the first and last offsets, a digest of the records
//   (key, value, timestamp, headers, in order) and a digest that also covers
//   each record's offset, and how many values start with "abort:" (records
//   of aborted transactions, as SpliceLoad writes them):
//   {"partitions":{"0":{...}},"total":N,"aborted_values":N}.
import java.security.MessageDigest;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.*;

public class History {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("group")) {
            group(args[1], args[2], args[3]);
        } else if (args[0].equals("write")) {
            int pad = args.length > 6 ? Integer.parseInt(args[6]) : 0;
            write(args[1], args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]), args[5], pad);
        } else {
            read(args[1], args[2], args[3]);
        }
    }

    static void write(String bootstrap, String topic, int from, int count, String compression, int pad) throws Exception {
        String dots = ".".repeat(pad);
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("compression.type", compression);
        p.put("linger.ms", "5");
        p.put("delivery.timeout.ms", "60000");
        int acked = 0, errors = 0;
        String first = "";
        long base = System.currentTimeMillis() - 3_600_000L;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = from; i < from + count; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, null, base + i, "k" + (i % 50), "v" + i + dots);
                r.headers().add("seq", Integer.toString(i).getBytes("UTF-8"));
                sent.add(producer.send(r));
            }
            for (Future<RecordMetadata> f : sent) {
                try { f.get(90, TimeUnit.SECONDS); acked++; }
                catch (Exception e) { if (errors++ == 0) first = String.valueOf(e); }
            }
        }
        System.out.println("{\"acked\":" + acked + ",\"errors\":" + errors + ",\"first_error\":\"" + first.replace("\"", "'") + "\"}");
    }

    static void read(String bootstrap, String topic, String isolation) throws Exception {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("isolation.level", isolation);
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        StringBuilder out = new StringBuilder("{\"partitions\":{");
        long total = 0, abortedValues = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            parts.sort(Comparator.comparingInt(TopicPartition::partition));
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<TopicPartition, Long> ends = consumer.endOffsets(parts, Duration.ofSeconds(30));
            Map<TopicPartition, MessageDigest> plain = new HashMap<>(), placed = new HashMap<>();
            Map<TopicPartition, long[]> seen = new HashMap<>();
            for (TopicPartition tp : parts) {
                plain.put(tp, MessageDigest.getInstance("SHA-256"));
                placed.put(tp, MessageDigest.getInstance("SHA-256"));
                seen.put(tp, new long[] {0, -1, -1});
            }
            long deadline = System.currentTimeMillis() + 120_000;
            while (System.currentTimeMillis() < deadline) {
                boolean done = true;
                for (TopicPartition tp : parts) {
                    if (consumer.position(tp) < ends.get(tp)) done = false;
                }
                if (done) break;
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    if (r.offset() >= ends.get(tp)) continue;
                    if (r.value() != null && new String(r.value(), "UTF-8").startsWith("abort:")) abortedValues++;
                    byte[] record = describe(r);
                    plain.get(tp).update(record);
                    placed.get(tp).update((r.offset() + ":").getBytes("UTF-8"));
                    placed.get(tp).update(record);
                    long[] s = seen.get(tp);
                    s[0]++;
                    if (s[1] < 0) s[1] = r.offset();
                    s[2] = r.offset();
                }
            }
            boolean firstPart = true;
            for (TopicPartition tp : parts) {
                long[] s = seen.get(tp);
                total += s[0];
                if (!firstPart) out.append(',');
                firstPart = false;
                out.append('"').append(tp.partition()).append("\":{\"count\":").append(s[0])
                    .append(",\"first\":").append(s[1]).append(",\"last\":").append(s[2])
                    .append(",\"end\":").append(ends.get(tp))
                    .append(",\"digest\":\"").append(hex(plain.get(tp).digest()))
                    .append("\",\"placed\":\"").append(hex(placed.get(tp).digest())).append("\"}");
            }
        }
        out.append("},\"total\":").append(total).append(",\"aborted_values\":").append(abortedValues).append('}');
        System.out.println(out);
    }

    static void group(String bootstrap, String topic, String group) throws Exception {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", group);
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        long count = 0;
        Map<Integer, Long> first = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 90_000;
            Map<TopicPartition, Long> ends = null;
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    count++;
                    first.putIfAbsent(r.partition(), r.offset());
                }
                if (ends == null && !consumer.assignment().isEmpty()) {
                    ends = consumer.endOffsets(consumer.assignment(), Duration.ofSeconds(30));
                }
                if (ends != null) {
                    boolean done = true;
                    for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
                        if (consumer.position(e.getKey()) < e.getValue()) done = false;
                    }
                    if (done) break;
                }
            }
            consumer.commitSync(Duration.ofSeconds(30));
        }
        StringBuilder out = new StringBuilder("{\"count\":" + count + ",\"first\":{");
        boolean firstEntry = true;
        for (Map.Entry<Integer, Long> e : first.entrySet()) {
            if (!firstEntry) out.append(',');
            firstEntry = false;
            out.append('"').append(e.getKey()).append("\":").append(e.getValue());
        }
        System.out.println(out.append("}}"));
    }

    static byte[] describe(ConsumerRecord<byte[], byte[]> r) throws Exception {
        StringBuilder b = new StringBuilder();
        b.append(r.key() == null ? "-" : new String(r.key(), "UTF-8")).append('|');
        b.append(r.value() == null ? "-" : new String(r.value(), "UTF-8")).append('|');
        b.append(r.timestamp()).append('|').append(r.timestampType()).append('|');
        for (Header h : r.headers()) {
            b.append(h.key()).append('=').append(h.value() == null ? "-" : new String(h.value(), "UTF-8")).append(';');
        }
        b.append('\n');
        return b.toString().getBytes("UTF-8");
    }

    static String hex(byte[] bytes) {
        StringBuilder b = new StringBuilder();
        for (byte x : bytes) b.append(String.format("%02x", x));
        return b.toString();
    }
}

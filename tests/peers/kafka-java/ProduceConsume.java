// Produces COUNT records with the Java client's defaults (idempotent,
// acks=all, 5 in flight) to TOPIC through BOOTSTRAP, then reads them back
// with a consumer in GROUP and commits. Prints one JSON line the Rust tests
// assert on. Usage: java -cp 'libs/*' ProduceConsume.java BOOTSTRAP TOPIC GROUP COUNT [PROPS]
// PROPS: a properties file added to both clients (e.g. SASL settings).
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class ProduceConsume {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int count = Integer.parseInt(args[3]);
        Properties extra = new Properties();
        if (args.length > 4) {
            try (java.io.FileReader r = new java.io.FileReader(args[4])) { extra.load(r); }
        }
        Properties p = new Properties();
        p.putAll(extra);
        p.put("bootstrap.servers", bootstrap);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("delivery.timeout.ms", "60000");
        List<String> errors = Collections.synchronizedList(new ArrayList<>());
        int acked = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "k" + (i % 7), "j" + i)));
            }
            for (Future<RecordMetadata> f : sent) {
                try { f.get(90, TimeUnit.SECONDS); acked++; }
                catch (Exception e) { errors.add(String.valueOf(e.getCause() != null ? e.getCause() : e)); }
            }
        }
        Properties c = new Properties();
        c.putAll(extra);
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", group);
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        Set<String> seen = new HashSet<>();
        int duplicates = 0;
        long committed = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    if (!seen.add(r.value())) duplicates++;
                }
            }
            consumer.commitSync(Duration.ofSeconds(30));
            Set<TopicPartition> parts = consumer.assignment();
            for (OffsetAndMetadata o : consumer.committed(parts, Duration.ofSeconds(30)).values()) {
                if (o != null) committed += o.offset();
            }
        }
        System.out.println("{\"acked\":" + acked + ",\"errors\":" + errors.size()
            + ",\"first_error\":\"" + (errors.isEmpty() ? "" : errors.get(0).replace("\"", "'")) + "\""
            + ",\"consumed\":" + seen.size() + ",\"duplicates\":" + duplicates
            + ",\"committed_total\":" + committed + "}");
    }
}

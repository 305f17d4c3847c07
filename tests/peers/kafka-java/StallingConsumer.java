// A group member that stops polling but stays in its group: it reads until
// it has committed WANT records of TOPIC (printing "joined"), then, once
// the file STALL exists, no longer calls poll() for up to 120 s while its
// heartbeat thread keeps its session alive (session.timeout.ms 60 s). A
// rebalance then waits for it in vain: the member it leaves behind is
// stale. It ends without leaving the group and prints one JSON line.
// Usage: java -cp 'libs/*' StallingConsumer.java BOOTSTRAP TOPIC GROUP WANT STALL
import java.nio.file.*;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.serialization.*;

public class StallingConsumer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int want = Integer.parseInt(args[3]);
        Path stall = Paths.get(args[4]);
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", group);
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("session.timeout.ms", "60000");
        c.put("heartbeat.interval.ms", "1000");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c);
        consumer.subscribe(List.of(topic));
        int read = 0;
        long deadline = System.currentTimeMillis() + 60_000;
        while (read < want && System.currentTimeMillis() < deadline) {
            read += consumer.poll(Duration.ofMillis(200)).count();
        }
        consumer.commitSync(Duration.ofSeconds(30));
        System.out.println(read >= want ? "joined" : "read only " + read);
        System.out.flush();
        long end = System.currentTimeMillis() + 120_000;
        while (!Files.exists(stall) && System.currentTimeMillis() < end) {
            consumer.poll(Duration.ofMillis(200));
        }
        while (Files.exists(stall) && System.currentTimeMillis() < end) {
            Thread.sleep(100);
        }
        System.out.println("{\"read\":" + read + "}");
        System.out.flush();
        // No close(): the member stays in the group until its session expires.
        Runtime.getRuntime().halt(0);
    }
}

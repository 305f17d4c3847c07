// A RocketMQ client for cutover's tests and benchmarks on Apache RocketMQ's
// own Java client (the 5.x remoting client, or 4.9.x: the same classes), run
// from source with no build step:
//
//   java -cp 'LIB/*' Client.java produce --namesrv A --topic T --group G --id P --out FILE
//       [--count N] [--stop-file F] [--interval-ms M] [--delay-level L]
//       [--send-timeout-ms MS] (one send with its retries, default 3000)
//   java -cp 'LIB/*' Client.java consume --namesrv A --topic T --group G --out FILE --stop-file F
//       [--orderly true] [--broadcast true] [--retry-every K]
//       [--pop true [--pop-invisible-ms MS]]
//
// With `--retry-every K` the first delivery of each body whose SEQ is a
// multiple of K is answered RECONSUME_LATER (the broker redelivers it through
// the group's %RETRY% topic after its delay); only consumed bodies are written.
// An orderly consumer writes `BODY<TAB>STOREHOST/QUEUE` lines (the real
// broker's store address and the queue id), so order can be checked per queue.
//   java -cp 'LIB/*' Client.java transact --namesrv A --topic T --group G --id P --out FILE
//       --count N [--stop-file F] [--hold true]
//   java -cp 'LIB/*' Client.java bench --namesrv A --topic T --group G --count N --concurrency C [--size S]
//
// Every mode also takes [--poll-ms MS] (route poll and heartbeat interval,
// default 1000), [--vip true] (use the broker's VIP port, port - 2),
// [--access-key AK --secret-key SK] (sign every request, RocketMQ ACL) and
// [--tls-ca FILE] (TLS to NameServer and brokers, certificates checked
// against FILE).
//
// `produce` sends bodies `P:SEQ` (SEQ from 0) and appends each acknowledged
// body to FILE as a line; `consume` appends every delivered body to FILE.
// Both run until their count is reached or the stop file exists, then print
// one JSON summary line on stdout. `bench` sends N messages from C
// concurrent senders and prints msgs/s and latency quantiles as JSON.

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

public class Client {
    private final Map<String, String> args = new HashMap<>();
    /** Deliveries answered RECONSUME_LATER (`--retry-every`). */
    private final AtomicLong retried = new AtomicLong();
    /** Deliveries that came from a pop (they carry the POP_CK property). */
    private final AtomicLong popped = new AtomicLong();

    /** The SEQ of a `P:SEQ` body, or -1. */
    static long seq(MessageExt m) {
        String body = new String(m.getBody(), StandardCharsets.UTF_8);
        try {
            return Long.parseLong(body.substring(body.lastIndexOf(':') + 1));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0) {
            fail("usage: Client.java produce|consume|bench --namesrv A ...");
        }
        Client c = new Client();
        for (int i = 1; i < argv.length; i += 2) {
            if (i + 1 >= argv.length) {
                fail(argv[i] + " needs a value");
            }
            c.args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        tlsProperties(c.args);
        String summary;
        switch (argv[0]) {
            case "produce": summary = c.produce(); break;
            case "consume": summary = c.consume(); break;
            case "bench": summary = c.bench(); break;
            case "transact": summary = c.transact(); break;
            default: fail("unknown mode " + argv[0] + ": produce, consume, transact or bench"); return;
        }
        System.out.println(summary);
        System.out.flush();
        // The client library leaves non-daemon threads behind after shutdown.
        System.exit(0);
    }

    static void fail(String why) {
        System.err.println("rocketmq-java client: " + why);
        System.exit(2);
    }

    String get(String k) {
        String v = args.get(k);
        if (v == null) {
            fail("--" + k + " is required");
        }
        return v;
    }

    long num(String k, long dflt) {
        String v = args.get(k);
        if (v == null) {
            return dflt;
        }
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            fail("--" + k + " must be a number");
            return dflt;
        }
    }

    boolean flag(String k) {
        return "true".equals(args.get(k));
    }

    boolean stopped() {
        String stop = args.get("stop-file");
        return stop != null && Files.exists(Path.of(stop));
    }

    /** Route polls and heartbeats every second, so a test sees route changes fast. */
    void configure(org.apache.rocketmq.client.ClientConfig c) {
        int poll = (int) num("poll-ms", 1000);
        c.setNamesrvAddr(get("namesrv"));
        c.setPollNameServerInterval(poll);
        c.setHeartbeatBrokerInterval(poll);
        c.setPersistConsumerOffsetInterval(1000);
        c.setVipChannelEnabled(flag("vip"));
        c.setInstanceName(args.getOrDefault("id", get("group")) + "-" + ProcessHandle.current().pid());
        c.setUseTLS(args.containsKey("tls-ca"));
    }

    /**
     * Signs every request (ACL) when --access-key and --secret-key are given.
     * Built by reflection: the hook ships inside rocketmq-client 5.x but in a
     * separate rocketmq-acl jar for 4.9.x, and this file must compile on both.
     */
    org.apache.rocketmq.remoting.RPCHook hook() {
        String ak = args.get("access-key");
        if (ak == null) {
            return null;
        }
        try {
            Class<?> credentials = Class.forName("org.apache.rocketmq.acl.common.SessionCredentials");
            Object c = credentials.getConstructor(String.class, String.class).newInstance(ak, get("secret-key"));
            return (org.apache.rocketmq.remoting.RPCHook) Class
                .forName("org.apache.rocketmq.acl.common.AclClientRPCHook")
                .getConstructor(credentials).newInstance(c);
        } catch (ReflectiveOperationException e) {
            fail("--access-key needs the ACL hook on the class path: " + e);
            return null;
        }
    }

    /**
     * `--tls-ca FILE`: TLS to the NameServer and brokers, the server's
     * certificate checked against FILE (RocketMQ's client otherwise trusts
     * any certificate). Set before any client class reads TlsSystemConfig.
     */
    static void tlsProperties(Map<String, String> args) {
        String ca = args.get("tls-ca");
        if (ca == null) {
            return;
        }
        System.setProperty("tls.enable", "true");
        System.setProperty("tls.test.mode.enable", "false");
        System.setProperty("tls.client.authServer", "true");
        System.setProperty("tls.client.trustCertPath", ca);
    }

    static String json(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ") + "\"";
    }

    String produce() throws Exception {
        String topic = get("topic");
        String id = get("id");
        long count = num("count", Long.MAX_VALUE);
        long interval = num("interval-ms", 0);
        int delayLevel = (int) num("delay-level", 0);
        long sendTimeout = num("send-timeout-ms", 3000);
        DefaultMQProducer producer = new DefaultMQProducer(get("group"), hook());
        configure(producer);
        producer.setRetryTimesWhenSendFailed(2);
        producer.start();
        long seq = 0, acked = 0, failed = 0;
        List<String> errors = new ArrayList<>();
        try (PrintWriter out = new PrintWriter(new FileWriter(get("out"), StandardCharsets.UTF_8, true))) {
            while (seq < count && !stopped()) {
                String body = id + ":" + seq;
                try {
                    Message m = new Message(topic, body.getBytes(StandardCharsets.UTF_8));
                    if (delayLevel > 0) {
                        m.setDelayTimeLevel(delayLevel);
                    }
                    SendResult r = producer.send(m, sendTimeout);
                    if (r.getSendStatus() == SendStatus.SEND_OK) {
                        acked++;
                        out.println(body);
                        out.flush();
                    } else {
                        failed++;
                        note(errors, "status " + r.getSendStatus());
                    }
                } catch (Exception e) {
                    failed++;
                    note(errors, e.toString());
                }
                seq++;
                if (interval > 0) {
                    Thread.sleep(interval);
                }
            }
        }
        producer.shutdown();
        return "{\"mode\":\"produce\",\"id\":" + json(id) + ",\"sent\":" + seq + ",\"acked\":" + acked
            + ",\"failed\":" + failed + ",\"errors\":[" + String.join(",", errors.stream().map(Client::json).toList()) + "]}";
    }

    String transact() throws Exception {
        String topic = get("topic");
        String id = get("id");
        long count = num("count", 10);
        boolean hold = flag("hold");
        java.util.Set<String> checked = java.util.concurrent.ConcurrentHashMap.newKeySet();
        AtomicLong checks = new AtomicLong();
        TransactionMQProducer producer = new TransactionMQProducer(get("group"));
        configure(producer);
        producer.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                return LocalTransactionState.UNKNOW;
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                checks.incrementAndGet();
                // The broker may ask any producer of the group, about
                // another producer's message too: count only our own.
                String body = new String(msg.getBody(), StandardCharsets.UTF_8);
                if (hold && !stopped()) {
                    return LocalTransactionState.UNKNOW;
                }
                if (body.startsWith(id + ":")) {
                    checked.add(body);
                }
                return LocalTransactionState.COMMIT_MESSAGE;
            }
        });
        producer.start();
        long acked = 0, failed = 0;
        List<String> errors = new ArrayList<>();
        try (PrintWriter out = new PrintWriter(new FileWriter(get("out"), StandardCharsets.UTF_8, true))) {
            for (long seq = 0; seq < count && !stopped(); seq++) {
                String body = id + ":" + seq;
                try {
                    SendResult r = producer.sendMessageInTransaction(new Message(topic, body.getBytes(StandardCharsets.UTF_8)), null);
                    if (r.getSendStatus() == SendStatus.SEND_OK) {
                        acked++;
                        out.println(body);
                        out.flush();
                    } else {
                        failed++;
                        note(errors, "status " + r.getSendStatus());
                    }
                } catch (Exception e) {
                    failed++;
                    note(errors, e.toString());
                }
            }
        }
        while (checked.size() < acked && (hold || !stopped())) {
            Thread.sleep(50);
        }
        producer.shutdown();
        return "{\"mode\":\"transact\",\"id\":" + json(id) + ",\"acked\":" + acked + ",\"failed\":" + failed
            + ",\"checks\":" + checks.get() + ",\"checked\":" + checked.size()
            + ",\"errors\":[" + String.join(",", errors.stream().map(Client::json).toList()) + "]}";
    }

    static void note(List<String> errors, String e) {
        if (errors.size() < 5) {
            errors.add(e);
        }
    }

    String consume() throws Exception {
        if (args.get("stop-file") == null) {
            fail("--stop-file is required");
        }
        AtomicLong received = new AtomicLong();
        PrintWriter out = new PrintWriter(new FileWriter(get("out"), StandardCharsets.UTF_8, true));
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(get("group"), hook(),
            new org.apache.rocketmq.client.consumer.rebalance.AllocateMessageQueueAveragely());
        configure(consumer);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        if (flag("broadcast")) {
            broadcasting(consumer);
        }
        if (flag("pop")) {
            popMode(consumer, num("pop-invisible-ms", 10000));
        }
        consumer.subscribe(get("topic"), "*");
        if (flag("orderly")) {
            consumer.registerMessageListener((MessageListenerOrderly) (msgs, ctx) -> {
                recordWithQueue(out, received, msgs);
                return ConsumeOrderlyStatus.SUCCESS;
            });
        } else {
            long retryEvery = num("retry-every", 0);
            AtomicLong retried = this.retried;
            AtomicLong popped = this.popped;
            consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
                // One message per call (the default batch size of 1), so a
                // retry asks only for that message again.
                if (retryEvery > 0 && msgs.size() == 1 && msgs.get(0).getReconsumeTimes() == 0
                        && seq(msgs.get(0)) % retryEvery == 0) {
                    retried.incrementAndGet();
                    return ConsumeConcurrentlyStatus.RECONSUME_LATER;
                }
                for (MessageExt m : msgs) {
                    if (m.getProperty("POP_CK") != null) {
                        popped.incrementAndGet();
                    }
                }
                record(out, received, msgs);
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
        }
        consumer.start();
        System.out.println("{\"mode\":\"consume\",\"started\":true}");
        System.out.flush();
        while (!stopped()) {
            Thread.sleep(50);
        }
        consumer.shutdown();
        synchronized (out) {
            out.close();
        }
        return "{\"mode\":\"consume\",\"received\":" + received.get() + ",\"retried\":" + retried.get()
            + ",\"popped\":" + popped.get() + "}";
    }

    /**
     * 5.x only: the brokers rebalance the group (QUERY_ASSIGNMENT), and pop
     * the queues they assign in POP mode (the group's mode is set on each
     * broker with SET_MESSAGE_REQUEST_MODE); a popped message not acked
     * within `invisibleMs` is delivered again. Reflection keeps this source
     * compiling on the 4.9 client, which has neither setter.
     */
    static void popMode(DefaultMQPushConsumer consumer, long invisibleMs) throws Exception {
        consumer.getClass().getMethod("setClientRebalance", boolean.class).invoke(consumer, false);
        consumer.getClass().getMethod("setPopInvisibleTime", long.class).invoke(consumer, invisibleMs);
    }

    /**
     * MessageModel moved package between 4.9 and 5.x; one source serves both
     * clients by naming the enum constant through the setter's own type.
     */
    @SuppressWarnings({"unchecked", "rawtypes"})
    static void broadcasting(DefaultMQPushConsumer consumer) throws Exception {
        for (java.lang.reflect.Method m : consumer.getClass().getMethods()) {
            if (m.getName().equals("setMessageModel")) {
                Class type = m.getParameterTypes()[0];
                m.invoke(consumer, Enum.valueOf(type, "BROADCASTING"));
                return;
            }
        }
        fail("this client has no setMessageModel");
    }

    /** One line per delivered body. */
    static void record(PrintWriter out, AtomicLong received, List<MessageExt> msgs) {
        synchronized (out) {
            for (MessageExt m : msgs) {
                out.println(new String(m.getBody(), StandardCharsets.UTF_8));
                received.incrementAndGet();
            }
            out.flush();
        }
    }

    /**
     * Orderly mode: `BODY<TAB>STOREHOST/QUEUE` per delivery, so a test can
     * check the order within each queue of each real broker.
     */
    static void recordWithQueue(PrintWriter out, AtomicLong received, List<MessageExt> msgs) {
        synchronized (out) {
            for (MessageExt m : msgs) {
                out.println(new String(m.getBody(), StandardCharsets.UTF_8) + "\t" + m.getStoreHost() + "/" + m.getQueueId());
                received.incrementAndGet();
            }
            out.flush();
        }
    }

    String bench() throws Exception {
        String topic = get("topic");
        long count = num("count", 10_000);
        int concurrency = (int) Math.max(1, num("concurrency", 8));
        byte[] body = new byte[(int) Math.max(1, num("size", 128))];
        java.util.Arrays.fill(body, (byte) 'x');
        DefaultMQProducer producer = new DefaultMQProducer(get("group"));
        configure(producer);
        producer.start();
        producer.send(new Message(topic, "warm".getBytes(StandardCharsets.UTF_8)), 5000);
        AtomicLong next = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        List<Long> latencies = Collections.synchronizedList(new ArrayList<>());
        long started = System.nanoTime();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < concurrency; i++) {
            Thread t = new Thread(() -> {
                while (next.getAndIncrement() < count) {
                    long t0 = System.nanoTime();
                    try {
                        producer.send(new Message(topic, body), 5000);
                        latencies.add(System.nanoTime() - t0);
                    } catch (Exception e) {
                        failed.incrementAndGet();
                    }
                }
            });
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) {
            t.join();
        }
        double elapsed = (System.nanoTime() - started) / 1e9;
        producer.shutdown();
        List<Long> sorted = new ArrayList<>(latencies);
        Collections.sort(sorted);
        return "{\"mode\":\"bench\",\"sent\":" + sorted.size() + ",\"failed\":" + failed.get()
            + ",\"msgs_per_s\":" + (sorted.size() / elapsed) + ",\"p50_ms\":" + quantile(sorted, 0.5)
            + ",\"p99_ms\":" + quantile(sorted, 0.99) + "}";
    }

    static double quantile(List<Long> sorted, double p) {
        if (sorted.isEmpty()) {
            return 0;
        }
        int i = Math.min(sorted.size() - 1, (int) (sorted.size() * p));
        return sorted.get(i) / 1e6;
    }
}

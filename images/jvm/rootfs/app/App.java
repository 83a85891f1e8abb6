// ctk-demo/jvm: a tiny web app whose whole state lives in the JVM's heap.
//
//   GET  /state   {"hits": N, "started": T, "pid": P}
//   POST /hit     hits += 1; answers the new state
//
// A restarted JVM would answer hits 0 and a new "started"; a restored one goes on.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

public class App {
    static final AtomicLong HITS = new AtomicLong();
    static final long STARTED = System.currentTimeMillis();
    static final long PID = ProcessHandle.current().pid();

    static void reply(HttpExchange ex, int status, String body) throws IOException {
        byte[] data = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, data.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(data);
        }
    }

    static String state() {
        return "{\"hits\": " + HITS.get() + ", \"pid\": " + PID + ", \"started\": " + STARTED + "}";
    }

    public static void main(String[] args) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(8000), 0);
        server.createContext("/state", ex -> reply(ex, 200, state()));
        server.createContext("/hit", ex -> {
            if (!"POST".equals(ex.getRequestMethod())) {
                reply(ex, 405, "{\"error\": \"POST only\"}");
                return;
            }
            HITS.incrementAndGet();
            reply(ex, 200, state());
        });
        server.start();
        System.out.println("jvm app listening on :8000");
    }
}

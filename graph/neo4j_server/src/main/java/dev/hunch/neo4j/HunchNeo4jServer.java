package dev.hunch.neo4j;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.SettingValueParsers;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Result;
import org.neo4j.graphdb.Transaction;

/**
 * A persistent embedded Neo4j DBMS with Bolt on 127.0.0.1, for machines without Docker.
 *
 * <p>Why embedded rather than the Neo4j server tarball: the tarball is not on Maven
 * Central, the embedded DBMS is, and it speaks the same Bolt protocol with the same
 * store format. Data lives in {@code --data-dir} and survives restarts.
 *
 * <p>Arguments: {@code --port N --data-dir DIR --plugins-dir DIR --pagecache SIZE}.
 * The password comes from the environment ({@code HUNCH_NEO4J_PASSWORD}) so that it
 * never shows in a process listing. It is set on the first start only, when the
 * built-in {@code neo4j} user still carries the factory password.
 *
 * <p>Prints {@code HUNCH_NEO4J_READY bolt://127.0.0.1:N} once Bolt accepts connections,
 * and shuts the DBMS down cleanly on SIGTERM (the JVM's shutdown hook).
 */
public final class HunchNeo4jServer {

    /** Neo4j 5 refuses passwords shorter than this (dbms.security.auth_minimum_password_length). */
    private static final int MIN_PASSWORD_LENGTH = 8;

    /**
     * Transaction logs kept after a checkpoint (db.tx_log.rotation.retention_policy).
     * Old logs serve only incremental backups and cluster members catching up, which a
     * dev/test server has neither of; Neo4j's default, "2 days", kept 7.6 GB of logs here
     * after an afternoon of 1M-follow benchmark loads. Recovery needs only the logs since
     * the last checkpoint, which Neo4j keeps whatever this says.
     */
    private static final String TX_LOG_RETENTION = "1G size";

    private HunchNeo4jServer() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parseArgs(argv);
        int port = Integer.parseInt(args.getOrDefault("port", "7687"));
        Path dataDir = Path.of(args.getOrDefault("data-dir", ".neo4j/data")).toAbsolutePath();
        Path pluginsDir = Path.of(required(args, "plugins-dir")).toAbsolutePath();
        String pagecache = args.getOrDefault("pagecache", "256m");
        String password = System.getenv("HUNCH_NEO4J_PASSWORD");
        if (password == null || password.length() < MIN_PASSWORD_LENGTH) {
            fail("set HUNCH_NEO4J_PASSWORD to a password of at least "
                    + MIN_PASSWORD_LENGTH + " characters");
        }
        Files.createDirectories(dataDir);

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(dataDir)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.plugin_dir, pluginsDir)
                .setConfig(GraphDatabaseSettings.procedure_unrestricted, List.of("gds.*", "apoc.*"))
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, SettingValueParsers.BYTES.parse(pagecache))
                .setConfig(GraphDatabaseSettings.keep_logical_logs, TX_LOG_RETENTION)
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("HUNCH_NEO4J_STOPPING");
            try {
                dbms.shutdown();
            } finally {
                System.out.println("HUNCH_NEO4J_STOPPED");
                System.out.flush();
                stopped.countDown();
            }
        }, "hunch-neo4j-shutdown"));

        setInitialPassword(dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME), password);
        System.out.println("HUNCH_NEO4J_READY bolt://127.0.0.1:" + port);
        System.out.flush();
        stopped.await();
    }

    /** Replaces the factory password on first start; later starts keep whatever is stored. */
    private static void setInitialPassword(GraphDatabaseService system, String password) {
        boolean factoryPassword;
        try (Transaction tx = system.beginTx();
             Result users = tx.execute("SHOW USERS YIELD user, passwordChangeRequired "
                     + "WHERE user = 'neo4j' RETURN passwordChangeRequired")) {
            factoryPassword = users.hasNext()
                    && Boolean.TRUE.equals(users.next().get("passwordChangeRequired"));
        }
        if (factoryPassword) {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
            System.out.println("HUNCH_NEO4J_PASSWORD_SET for user neo4j");
        }
    }

    private static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                fail("expected --name value pairs, got: " + String.join(" ", argv));
            }
            args.put(argv[i].substring(2), argv[++i]);
        }
        return args;
    }

    private static String required(Map<String, String> args, String name) {
        String value = args.get(name);
        if (value == null) {
            fail("missing --" + name);
        }
        return value;
    }

    private static void fail(String message) {
        System.err.println("hunch-neo4j: " + message);
        System.exit(2);
    }
}

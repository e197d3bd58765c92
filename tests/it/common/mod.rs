//! Test harness: real RabbitMQ and Redis, one unique prefix per test.
//!
//! Services come from `AMQP_URL` / `REDIS_URL` when set (scripts/test.sh and CI set them),
//! else from the local default ports when they answer, else from testcontainers where a
//! Docker engine exists. Every test gets its own exchange/queue/key prefix and deletes what
//! it declared when dropped, so tests run in parallel and repeatedly against one broker
//! without leaving quorum queues (Raft groups) behind.

mod cluster;

pub use cluster::LocalCluster;

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, Consumer};
use mensajero::broker::{self, Producer, Topology};
use mensajero::config::Config;
use mensajero::inbound::InboundEvent;
use mensajero::job::Priority;
use mensajero::outcome::Outcome;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Broker and Redis addresses for this test run.
#[derive(Clone, Debug)]
pub struct Services {
    pub amqp_url: String,
    pub redis_url: String,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

const LOCAL_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";

/// Where the services are; resolved once per test process.
pub fn services() -> Services {
    SERVICES
        .get_or_init(|| {
            if let (Ok(amqp_url), Ok(redis_url)) = (std::env::var("AMQP_URL"), std::env::var("REDIS_URL")) {
                return Services { amqp_url, redis_url };
            }
            let reachable = |addr: &str| {
                std::net::TcpStream::connect_timeout(&addr.parse().expect("literal address"), Duration::from_millis(300)).is_ok()
            };
            if reachable("127.0.0.1:5672") && reachable("127.0.0.1:6379") {
                return Services { amqp_url: LOCAL_AMQP.into(), redis_url: LOCAL_REDIS.into() };
            }
            containers().unwrap_or_else(|e| {
                panic!(
                    "no RabbitMQ/Redis for the tests: set AMQP_URL and REDIS_URL, run scripts/services.sh, \
                     or provide a Docker engine for testcontainers ({e})"
                )
            })
        })
        .clone()
}

/// Start RabbitMQ and Redis containers (kept for the life of the test process). Runs on its
/// own thread and runtime because it is called from inside async tests.
fn containers() -> Result<Services, String> {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            use testcontainers::ImageExt;
            use testcontainers::runners::AsyncRunner;
            let rabbit = testcontainers_modules::rabbitmq::RabbitMq::default()
                .with_tag("3.13-management")
                .start()
                .await
                .map_err(|e| e.to_string())?;
            let redis = testcontainers_modules::redis::Redis::default()
                .with_tag("7.2")
                .start()
                .await
                .map_err(|e| e.to_string())?;
            let amqp_port = rabbit
                .get_host_port_ipv4(5672)
                .await
                .map_err(|e| e.to_string())?;
            let redis_port = redis
                .get_host_port_ipv4(6379)
                .await
                .map_err(|e| e.to_string())?;
            // The containers must outlive every test in the process.
            std::mem::forget(rabbit);
            std::mem::forget(redis);
            Ok(Services {
                amqp_url: format!("amqp://guest:guest@127.0.0.1:{amqp_port}/%2f"),
                redis_url: format!("redis://127.0.0.1:{redis_port}"),
            })
        })
    })
    .join()
    .map_err(|_| "container start-up panicked".to_string())?
}

/// A unique name prefix for one test.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "t-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Build a configuration for a test: services, unique prefixes, short timeouts, the given
/// channels (TOML) and environment (secrets).
pub fn config(prefix: &str, channels_toml: &str, env: &[(&str, &str)]) -> Config {
    let services = services();
    let overlay = format!(
        r#"
[amqp]
url = "{amqp}"
prefix = "{prefix}"
# Two tiers are enough to exercise parking; fewer quorum queues per test.
delay_tiers = ["1s", "5s"]
[redis]
url = "{redis}"
prefix = "{prefix}"
[worker]
max_in_flight = 64
prefetch = 64
lease = "20s"
shutdown_grace = "10s"
inline_wait = "1s"
[http]
listen = "127.0.0.1:0"
{channels_toml}
"#,
        amqp = services.amqp_url,
        redis = services.redis_url,
    );
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_sources(Some(&overlay), env).unwrap_or_else(|p| panic!("test config invalid: {p}"))
}

/// One test's slice of the broker and Redis, plus an optional in-process worker.
pub struct TestApp {
    pub prefix: String,
    pub config: Config,
    pub topology: Topology,
    pub connection: Connection,
    pub producer: Producer,
    outcomes: tokio::sync::Mutex<Consumer>,
    inbound: tokio::sync::Mutex<Consumer>,
    worker: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
    /// The in-process worker's HTTP listener (`http://127.0.0.1:port`), once started.
    pub http: Option<String>,
}

impl TestApp {
    /// Declare the topology and an outcome tap, without starting a worker.
    pub async fn new(config: Config) -> Self {
        // In-process workers log through the test's writer when RUST_LOG asks for it.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let prefix = config.amqp.prefix.clone();
        let topology = Topology::from_config(&config.amqp);
        let connection = broker::connect(&config.amqp.url, "mensajero-test")
            .await
            .expect("connect to RabbitMQ");
        let producer = Producer::new(&connection, topology.clone())
            .await
            .expect("producer");
        let channel = connection.create_channel().await.expect("channel");
        let outcomes = tap(&channel, &topology.outcomes_exchange).await;
        let inbound = tap(&channel, &topology.inbound_exchange).await;
        Self {
            prefix,
            config,
            topology,
            connection,
            producer,
            outcomes: tokio::sync::Mutex::new(outcomes),
            inbound: tokio::sync::Mutex::new(inbound),
            worker: None,
            http: None,
        }
    }

    /// Declare everything and start a worker in this process.
    pub async fn spawn(config: Config) -> Self {
        let mut app = Self::new(config).await;
        app.start_worker().await;
        app
    }

    /// Start an in-process worker (its listener on a free port: see [`TestApp::http`]).
    pub async fn start_worker(&mut self) {
        let token = CancellationToken::new();
        let running = mensajero::worker::start(self.config.clone(), token.clone())
            .await
            .expect("worker starts");
        self.http = Some(format!("http://{}", running.http_addr));
        self.worker = Some((token, running.task));
        self.wait_ready().await;
    }

    /// Wait (up to 15 s) until the worker's `/readyz` says it is connected to both services.
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let ready = client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker not ready within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The worker's listener URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http.as_deref().expect("worker running"))
    }

    /// Publish a job (validated by the producer).
    pub async fn enqueue(&self, job: &Value) {
        self.producer
            .enqueue(job.to_string().as_bytes())
            .await
            .expect("enqueue");
    }

    /// Publish raw bytes as a job, unvalidated.
    pub async fn enqueue_raw(&self, body: &[u8]) {
        self.producer
            .publish_raw(body, Priority::Transactional)
            .await
            .expect("publish raw");
    }

    /// The next outcome event, within 15 s.
    pub async fn next_outcome(&self) -> Outcome {
        self.try_next_outcome(Duration::from_secs(15))
            .await
            .expect("an outcome within 15 s")
    }

    /// The next outcome event, if one comes within `wait`.
    pub async fn try_next_outcome(&self, wait: Duration) -> Option<Outcome> {
        let mut consumer = self.outcomes.lock().await;
        let delivery = tokio::time::timeout(wait, consumer.next())
            .await
            .ok()??
            .expect("outcome delivery");
        Some(serde_json::from_slice(&delivery.data).expect("outcome JSON"))
    }

    /// Collect outcomes until `n` have arrived (panics after 30 s without progress).
    pub async fn outcomes(&self, n: usize) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.try_next_outcome(Duration::from_secs(30)).await {
                Some(o) => out.push(o),
                None => panic!(
                    "only {} of {n} outcomes arrived: {:#?}",
                    out.len(),
                    out.iter().map(|o| o.routing_key()).collect::<Vec<_>>()
                ),
            }
        }
        out
    }

    /// The next inbound event, if one comes within `wait`.
    pub async fn try_next_inbound(&self, wait: Duration) -> Option<InboundEvent> {
        let mut consumer = self.inbound.lock().await;
        let delivery = tokio::time::timeout(wait, consumer.next())
            .await
            .ok()??
            .expect("inbound delivery");
        Some(serde_json::from_slice(&delivery.data).expect("inbound event JSON"))
    }

    /// Collect inbound events until `n` have arrived (panics after 30 s without progress).
    pub async fn inbound_events(&self, n: usize) -> Vec<InboundEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.try_next_inbound(Duration::from_secs(30)).await {
                Some(event) => out.push(event),
                None => panic!(
                    "only {} of {n} inbound events arrived: {:#?}",
                    out.len(),
                    out.iter()
                        .map(InboundEvent::routing_key)
                        .collect::<Vec<_>>()
                ),
            }
        }
        out
    }

    /// Assert no further outcome arrives within `wait`.
    pub async fn assert_quiet(&self, wait: Duration) {
        if let Some(o) = self.try_next_outcome(wait).await {
            panic!("unexpected outcome: {o:#?}");
        }
    }

    /// Take the next dead letter (body and headers), waiting up to 15 s.
    pub async fn next_dead_letter(&self) -> (Vec<u8>, FieldTable) {
        let channel = self.connection.create_channel().await.expect("channel");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(msg) = channel
                .basic_get(
                    self.topology.dead_queue.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await
                .expect("basic_get")
            {
                msg.delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
                let headers = msg
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default();
                let _ = channel.close(200, "done".into()).await;
                return (msg.delivery.data, headers);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no dead letter within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait (up to 10 s) until a queue holds `expected` ready messages, and return how many it
    /// holds then. Quorum queues apply acks through Raft, so their counts settle a moment later.
    pub async fn settled_queue_len(&self, queue: &str, expected: u32) -> u32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.queue_len(queue).await;
            if n == expected || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages waiting in a queue.
    pub async fn queue_len(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let count = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare")
            .message_count();
        // Polling opens many channels; each must go, or the connection hits channel_max.
        let _ = channel.close(200, "done".into()).await;
        count
    }
}

/// A header's text value.
pub fn header(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((token, handle)) = self.worker.take() {
            token.cancel();
            handle.abort();
        }
        // Straight to the services, not through the test's config: a test that routes the
        // worker through a fault proxy has usually dropped that proxy by now.
        let services = services();
        cleanup(
            self.topology.clone(),
            services.redis_url,
            self.prefix.clone(),
            services.amqp_url,
        );
    }
}

/// A private queue bound to every routing key of `exchange`, consumed without acks.
async fn tap(channel: &lapin::Channel, exchange: &str) -> Consumer {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap queue");
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind tap");
    channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume tap")
}

/// Delete a test's queues, exchanges and Redis keys. Runs on its own thread and runtime so it
/// works from `Drop`, even while a test panics.
pub fn cleanup(topology: Topology, redis_url: String, prefix: String, amqp_url: String) {
    let pattern = format!("{prefix}:*");
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if let Ok(connection) = broker::connect(&amqp_url, "mensajero-test-cleanup").await
                && let Ok(channel) = connection.create_channel().await
            {
                let _ = topology.delete(&channel).await;
                let _ = connection.close(200, "cleanup".into()).await;
            }
            if let Ok(client) = redis::Client::open(redis_url)
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(pattern)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                }
            }
        })
    })
    .join();
    if result.is_err() {
        eprintln!("cleanup of {prefix} failed");
    }
}

/// A port free right now on 127.0.0.1, for a worker whose address must be known before its
/// configuration is final (a mock channel POSTing receipts to the worker's own listener).
///
/// Chosen below the kernel's ephemeral range: a port from that range (what binding port 0
/// gives) can be taken, between this check and the worker's bind, as the source port of any
/// outgoing connection a parallel test opens, and under CI's load one was ("Address already
/// in use"). Below the range only another explicit bind can take it.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 11_000 {
        for _ in 0..100 {
            let port = rand::random_range(10_000..ephemeral_low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Start the mock gateway (all simulated APIs) in this process, on a free port.
pub async fn start_gateway(
    options: mensajero::config::MockOptions,
) -> (
    mensajero::gateways::simulator::MockCore,
    String,
    CancellationToken,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let core = mensajero::gateways::simulator::MockCore::new(options);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(mensajero::gateways::simulator::serve(
        listener,
        core.clone(),
        async move { token.cancelled().await },
    ));
    (core, url, stop)
}

/// A worker as a real child process.
pub struct WorkerProcess {
    child: std::process::Child,
}

impl WorkerProcess {
    /// Start `mensajero run` with this configuration file and environment.
    pub fn start(config_path: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(config_path, env, "warn", std::process::Stdio::inherit())
    }

    /// Start `mensajero run` logging JSON lines at `rust_log` to `stderr` (a file, to read
    /// the logs back).
    pub fn start_with(
        config_path: &std::path::Path,
        env: &[(&str, &str)],
        rust_log: &str,
        stderr: impl Into<std::process::Stdio>,
    ) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mensajero"))
            .args(["--log-format", "json", "--config"])
            .arg(config_path)
            .arg("run")
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start worker");
        Self { child }
    }

    /// Send a signal (`-KILL`, `-TERM`).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit.
    pub async fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker did not exit in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration file under the system temp dir, removed on drop.
pub struct TempConfig(std::path::PathBuf);

impl TempConfig {
    /// Write a worker configuration for `app`'s prefix with these extra TOML sections.
    pub fn write(app: &TestApp, worker_toml: &str, channels_toml: &str) -> Self {
        let services = services();
        Self::write_via(
            app,
            &services.amqp_url,
            &services.redis_url,
            worker_toml,
            channels_toml,
        )
    }

    /// [`TempConfig::write`] with the broker and Redis reached at these URLs (through a
    /// fault-injecting proxy, say); `channels_toml` may hold any further sections.
    pub fn write_via(
        app: &TestApp,
        amqp_url: &str,
        redis_url: &str,
        worker_toml: &str,
        channels_toml: &str,
    ) -> Self {
        Self::write_sections(
            app,
            &format!("url = {amqp_url:?}"),
            &format!("url = {redis_url:?}"),
            worker_toml,
            channels_toml,
        )
    }

    /// As [`Self::write_via`], with where the broker and Redis are given as the `[amqp]` and
    /// `[redis]` lines (a cluster's `urls`, `sentinels`, …).
    pub fn write_sections(
        app: &TestApp,
        amqp_toml: &str,
        redis_toml: &str,
        worker_toml: &str,
        channels_toml: &str,
    ) -> Self {
        let text = format!(
            r#"
[amqp]
{amqp_toml}
prefix = "{prefix}"
delay_tiers = ["1s", "5s"]
[redis]
{redis_toml}
prefix = "{prefix}"
# Several worker processes run at once: each takes a free port.
[http]
listen = "127.0.0.1:0"
[worker]
{worker_toml}
{channels_toml}
"#,
            prefix = app.prefix,
        );
        let path = std::env::temp_dir().join(format!("{}.toml", app.prefix));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl std::ops::Deref for TempConfig {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A TCP proxy in front of a service, to cut a worker off from it without stopping the
/// shared service: `cut()` drops every open connection and refuses new ones until `restore()`.
/// In front of several upstreams it is a balancer: each connection goes to the next upstream
/// that accepts it, so replicas restarting behind it (on fixed ports) stay reachable.
pub struct Proxy {
    /// `host:port` to point clients at.
    pub addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    stop: CancellationToken,
}

impl Proxy {
    /// Proxy `127.0.0.1:<free port>` to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        Self::balance(&[upstream.to_string()]).await
    }

    /// Proxy `127.0.0.1:<free port>` to `upstreams` in turn, skipping those that refuse.
    pub async fn balance(upstreams: &[String]) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let stop = CancellationToken::new();
        let upstreams = std::sync::Arc::new(upstreams.to_vec());
        let (open2, gen2, stop2) = (open.clone(), generation.clone(), stop.clone());
        tokio::spawn(async move {
            let mut turn = 0usize;
            loop {
                let accepted = tokio::select! {
                    _ = stop2.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if !open2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let first = turn;
                turn = turn.wrapping_add(1);
                let upstreams = upstreams.clone();
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let mut server = None;
                    for i in 0..upstreams.len() {
                        let upstream = &upstreams[(first + i) % upstreams.len()];
                        if let Ok(s) = tokio::net::TcpStream::connect(upstream).await {
                            server = Some(s);
                            break;
                        }
                    }
                    let Some(mut server) = server else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            open,
            generation,
            stop,
        }
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accept connections again.
    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// `host:port` of a service URL (`redis://127.0.0.1:6379` → `127.0.0.1:6379`).
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

// ---- Channels for every gateway API, shared by the receipt and bad-input tests.

/// The webhook secret every channel of [`gateway_channels`] uses.
pub const HOOK_SECRET: &str = "hook-secret-0123456789";
/// Meta's `hub.verify_token` of the `meta-mx` channel.
pub const VERIFY_TOKEN: &str = "verify-token-abc";

/// One channel per gateway API (and one on the in-process mock), all pointed at the mock gateway, each with a webhook secret.
pub fn gateway_channels(gateway: &str) -> String {
    let common = format!(
        "base_url = \"{gateway}\"\napi_key_env = \"T_KEY\"\nwebhook_secret_env = \"T_HOOK\"\ntimeout = \"2s\"\nrate_per_second = 100000\n"
    );
    format!(
        r#"
[channels.waspy-ar]
provider = "waspy"
sender = "550e8400-e29b-41d4-a716-446655440000"
{common}
[channels.meta-mx]
provider = "meta"
sender = "106540352242922"
verify_token_env = "T_VERIFY"
{common}
[channels.wazzup-ru]
provider = "wazzup"
sender = "e0629e11-0f67-4567-92a9-2237e91ec1b9"
{common}
[channels.seven-de]
provider = "seven"
sender = "4915112345678"
{common}
[channels.whaapy-mx]
provider = "whaapy"
{common}
[channels.demo]
provider = "mock"
webhook_secret_env = "T_HOOK"
"#
    )
}

/// The environment [`gateway_channels`] reads its secrets from.
pub const GATEWAY_ENV: &[(&str, &str)] = &[
    ("T_KEY", "key_0123456789"),
    ("T_HOOK", HOOK_SECRET),
    ("T_VERIFY", VERIFY_TOKEN),
];

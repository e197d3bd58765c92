//! `mensajero-bench`: the worker's benchmark suite.
//!
//! Every scenario runs the real release binary as separate processes — the mock gateway
//! (`mensajero mock-gateway`) and one or more workers (`mensajero run`) — against the local
//! RabbitMQ and Redis, so what is measured is what an operator would deploy. This process
//! only publishes jobs (preloaded, or open-loop at a fixed rate), collects outcomes from a
//! private queue on the outcomes exchange, and reads the workers' CPU and memory from
//! `/proc`. `bench/run.sh` wraps it with a private vhost and cleans up afterwards.
//!
//! # Layout
//! - `procs`: starting, measuring and stopping the mock gateway and worker processes.
//! - `load`: the pipelined, confirmed job publisher (preload and open loop).
//! - `collect`: the outcome collector and what it knows per job.
//! - this file: the scenarios, their measurements and the table.

mod collect;
mod load;
mod procs;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mensajero::broker::{self, Topology};
use mensajero::config::Config;
use serde::Serialize;

use collect::{Collector, quantile};
use load::Load;
use procs::{MockBehaviour, MockGateway, Worker};

#[derive(Parser)]
#[command(
    name = "mensajero-bench",
    about = "Benchmark the mensajero worker as separate processes"
)]
struct Cli {
    /// Small sizes: a ~1-minute smoke run of every scenario.
    #[arg(long)]
    quick: bool,
    /// Broker URL; use a vhost of your own (`bench/run.sh` makes and deletes one).
    #[arg(long, env = "BENCH_AMQP_URL")]
    amqp_url: String,
    /// Redis URL.
    #[arg(
        long,
        env = "BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Prefix of every Redis key the workers write; deleted after each scenario.
    #[arg(long, default_value = "mensajero-bench")]
    redis_prefix: String,
    /// The `mensajero` release binary under test.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Where worker configs, logs and `results.json` go.
    #[arg(long, default_value = "bench/out")]
    out: PathBuf,
    /// Run each worker under this command (e.g. `valgrind --tool=callgrind`), words split on
    /// spaces; the worker's CPU and memory numbers then include the wrapper's.
    #[arg(long)]
    worker_wrapper: Option<String>,
    /// Run only the scenarios of these names (comma-separated), each an exact name when one
    /// matches, else a substring.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run the selected scenarios this many times in turn (A, B, A, B, …): on a noisy host,
    /// alternating rounds compare better than back-to-back repeats.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// The nodes of a RabbitMQ cluster (comma-separated), each with a vhost of your own
    /// (`bench/run.sh --cluster` makes one): cluster scenarios run there and are skipped
    /// without it.
    #[arg(long, env = "BENCH_CLUSTER_AMQP_URLS", value_delimiter = ',')]
    cluster_amqp_urls: Vec<String>,
    /// Pids of the RabbitMQ behind `--amqp-url`, whose CPU is measured; unset, every
    /// `beam.smp` on the machine counts (cluster nodes included).
    #[arg(long, value_delimiter = ',')]
    rabbitmq_pids: Vec<u32>,
    /// Pids of the cluster's nodes, whose CPU is summed in cluster scenarios; unset, every
    /// `beam.smp` counts.
    #[arg(long, value_delimiter = ',')]
    cluster_rabbitmq_pids: Vec<u32>,
}

/// Which RabbitMQ a scenario's workers and load generator use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    /// The one node behind `--amqp-url`.
    Single,
    /// The nodes of `--cluster-amqp-urls`, as `[amqp] urls`: quorum queues replicated to all.
    Cluster,
}

/// One scenario: a gateway behaviour, a worker setup and a load.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    gateway: MockBehaviour,
    /// Jobs preloaded before the workers start (open-loop scenarios publish their own).
    jobs: u64,
    replicas: usize,
    /// `[worker] max_in_flight` / `prefetch` when not the defaults.
    max_in_flight: Option<usize>,
    prefetch: Option<u16>,
    /// The channel's `retry_schedule` when not the default.
    retry_schedule: Option<&'static str>,
    /// `RUST_LOG` for the worker when not its default (`info`).
    rust_log: Option<&'static str>,
    /// Open loop at these fractions of the capacity measured by `capacity_from`, this long each.
    open_loop: Option<(Vec<f64>, Duration, &'static str)>,
    broker: Broker,
    /// Which of `--rounds` this is (from 1): later rounds get names of their own so nothing
    /// a round leaves behind can meet the next one.
    round: u32,
}

impl Scenario {
    fn preload(name: &'static str, latency_ms: u64, jobs: u64) -> Self {
        Self {
            name,
            gateway: MockBehaviour {
                latency: Duration::from_millis(latency_ms),
                error_rate: 0.0,
                error_status: 503,
            },
            jobs,
            replicas: 1,
            max_in_flight: None,
            prefetch: None,
            retry_schedule: None,
            rust_log: None,
            open_loop: None,
            broker: Broker::Single,
            round: 1,
        }
    }

    /// The scenario's name in queue, key, job and file names: its name, plus the round after
    /// the first.
    fn tag(&self) -> String {
        if self.round == 1 {
            self.name.to_string()
        } else {
            format!("{}-r{}", self.name, self.round)
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, Default, Serialize)]
struct Row {
    scenario: String,
    round: u32,
    /// `single` or `cluster` (`Broker`).
    broker: String,
    replicas: usize,
    jobs: u64,
    finished: u64,
    /// Finished jobs over first pickup → last terminal outcome.
    jobs_per_s: f64,
    /// Completions between the 10th and 90th percentile of completion times.
    steady_jobs_per_s: f64,
    /// `queued` → `sent` outcome times.
    service_p50_ms: Option<i64>,
    service_p99_ms: Option<i64>,
    /// Publish → `sent` outcome.
    e2e_p50_ms: Option<i64>,
    e2e_p99_ms: Option<i64>,
    /// Worker user+system CPU over the measured interval, per finished job (all replicas).
    cpu_ms_per_job: f64,
    /// CPU per job of the mock gateway, RabbitMQ and Redis over the same interval (the
    /// services are shared: an upper bound).
    mock_cpu_ms_per_job: f64,
    rabbitmq_cpu_ms_per_job: f64,
    redis_cpu_ms_per_job: f64,
    /// Largest `VmHWM` among the replicas.
    peak_rss_mib: f64,
    /// Jobs published without any terminal outcome.
    lost: u64,
    /// Jobs with more than one terminal outcome.
    duplicate_outcomes: u64,
    /// `duplicate` events (a job treated as a repeat of another).
    duplicate_events: u64,
    /// Jobs that ended `failed`.
    failed: u64,
    /// Gateway requests, sends, idempotent replays and injected errors (mock counters).
    gateway_requests: u64,
    gateway_sent: u64,
    gateway_replayed: u64,
    gateway_errors: u64,
    /// Keys the gateway saw more than once (retries after errors, or resends).
    keys_requested_twice: u64,
    /// Outcome events per job.
    outcomes_per_job: f64,
    /// Redis commands per job (server-wide `INFO commandstats` delta: the Redis is shared).
    redis_calls_per_job: f64,
    /// Redis server CPU per job (µs, same caveat).
    redis_usec_per_job: f64,
    /// Redis calls per job by command.
    redis_by_command: BTreeMap<String, f64>,
    /// Largest number of established worker → gateway connections seen.
    gateway_conns_max: usize,
    /// Worker → gateway connections in TIME-WAIT at the end (closed, i.e. not reused).
    gateway_conns_time_wait: usize,
    /// Wall time of the scenario's measured part.
    wall_s: f64,
    /// Worker and RabbitMQ CPU per job between 10 % and 90 % of the jobs finished (sampled
    /// every 100 ms), the interval of `steady_jobs_per_s`.
    steady_cpu_ms_per_job: f64,
    steady_rabbitmq_cpu_ms_per_job: f64,
    /// Preloaded jobs per second of the bench's confirmed publishing, before any worker runs:
    /// where a cluster's replication of each publish shows, outside the measured part.
    preload_jobs_per_s: f64,
    /// RabbitMQ CPU per preloaded job while preloading.
    preload_rabbitmq_cpu_ms_per_job: f64,
}

struct Ctx {
    cli: Cli,
    bin: PathBuf,
    defaults: Config,
    clock_ticks: u64,
    redis: redis::Client,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = cli.bin.clone().unwrap_or_else(procs::default_bin);
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build --release`",
        bin.display()
    );
    std::fs::create_dir_all(&cli.out)?;
    let defaults = Config::load(None).map_err(|p| anyhow::anyhow!("{p}"))?;
    let redis = redis::Client::open(cli.redis_url.as_str())?;
    let ctx = Ctx {
        bin,
        defaults,
        clock_ticks: procs::clock_ticks(),
        redis,
        cli,
    };
    let mut rows: Vec<Row> = Vec::new();
    let all = scenarios(ctx.cli.quick);
    let selected: Vec<Scenario> = all
        .iter()
        .filter(|s| selected(&ctx.cli.only, &all, s.name))
        .filter(|s| {
            let runnable = s.broker == Broker::Single || !ctx.cli.cluster_amqp_urls.is_empty();
            if !runnable {
                eprintln!("== {} == skipped: needs --cluster-amqp-urls", s.name);
            }
            runnable
        })
        .cloned()
        .collect();
    for round in 1..=ctx.cli.rounds {
        for scenario in &selected {
            let scenario = Scenario {
                round,
                ..scenario.clone()
            };
            if ctx.cli.rounds > 1 {
                eprintln!("== {} (round {round}) ==", scenario.name);
            } else {
                eprintln!("== {} ==", scenario.name);
            }
            let capacity = scenario.open_loop.as_ref().and_then(|(_, _, from)| {
                rows.iter()
                    .rev()
                    .find(|r| r.scenario == *from)
                    .map(|r| r.steady_jobs_per_s)
            });
            let started = Instant::now();
            let result = run_scenario(&ctx, &scenario, capacity).await;
            let cleaned = cleanup_redis(&ctx, &redis_prefix(&ctx, &scenario)).await;
            match result {
                Ok(new) => {
                    for row in &new {
                        eprintln!("{}", serde_json::to_string(row)?);
                    }
                    rows.extend(new);
                }
                Err(e) => eprintln!("scenario {} failed: {e:#}", scenario.tag()),
            }
            if let Err(e) = cleaned {
                eprintln!("cleaning Redis keys of {}: {e:#}", scenario.tag());
            }
            eprintln!(
                "   ({:.0} s)",
                started.elapsed().as_secs_f64().max(0.0).round()
            );
        }
    }
    std::fs::write(
        ctx.cli.out.join("results.json"),
        serde_json::to_vec_pretty(&rows)?,
    )?;
    print!("{}", table(&rows));
    if ctx.cli.rounds > 1 {
        print!("{}", rounds_table(&rows));
    }
    Ok(())
}

/// Whether `--only` selects `name`: each entry is an exact name when one matches
/// (`throughput-0ms` must not also run `throughput-0ms-logs-warn` under a profiler), else a
/// substring. No entries select everything.
fn selected(only: &[String], all: &[Scenario], name: &str) -> bool {
    only.is_empty()
        || only.iter().any(|o| {
            if all.iter().any(|s| s.name == o) {
                name == o
            } else {
                name.contains(o.as_str())
            }
        })
}

/// The suite. Sizes: full keeps `bench/run.sh` under ~10 minutes on a shared 2-core box;
/// quick is a ~1-minute smoke test of the same scenarios.
fn scenarios(quick: bool) -> Vec<Scenario> {
    let size = |full: u64, small: u64| if quick { small } else { full };
    let phase = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let errors = |name, status| Scenario {
        gateway: MockBehaviour {
            latency: Duration::ZERO,
            error_rate: 0.05,
            error_status: status,
        },
        // Every retry waits 5 s in the 5 s delay tier (the durable path), instead of the
        // default 5 s, 30 s, 2 m…: one job failing three times in a row would otherwise hold
        // the scenario for minutes without telling anything new.
        retry_schedule: Some(r#"["5s"]"#),
        ..Scenario::preload(name, 0, size(5_000, 1_000))
    };
    let replicas = |name, latency_ms, jobs, replicas, max_in_flight| Scenario {
        replicas,
        max_in_flight,
        ..Scenario::preload(name, latency_ms, jobs)
    };
    vec![
        Scenario::preload("throughput-0ms", 0, size(20_000, 2_000)),
        // Same load with the worker's per-job info logs off: what logging costs.
        Scenario {
            rust_log: Some("warn"),
            ..Scenario::preload("throughput-0ms-logs-warn", 0, size(20_000, 2_000))
        },
        // SPEC §4's max_in_flight (256) against the default (1024): what the extra slots cost
        // when the gateway is not the limit, and what they buy when it is (below).
        Scenario {
            max_in_flight: Some(256),
            prefetch: Some(512),
            ..Scenario::preload("throughput-0ms-mif256", 0, size(20_000, 2_000))
        },
        Scenario::preload("throughput-100ms", 100, size(20_000, 2_000)),
        // 256 in flight caps a worker at 2,560 jobs/s at 100 ms by design.
        Scenario {
            max_in_flight: Some(256),
            prefetch: Some(512),
            ..Scenario::preload("throughput-100ms-mif256", 100, size(20_000, 2_000))
        },
        Scenario {
            open_loop: Some((vec![0.25, 0.5, 0.75], phase, "throughput-100ms")),
            ..Scenario::preload("open-loop-100ms", 100, 0)
        },
        errors("errors-5pct-503", 503),
        errors("errors-5pct-429", 429),
        // 2,000 calls in flight: memory per in-flight job.
        Scenario {
            max_in_flight: Some(2_000),
            prefetch: Some(2_000),
            ..Scenario::preload("inflight-2000-1s", 1_000, size(8_000, 4_000))
        },
        replicas("scale-0ms-x1", 0, size(10_000, 1_500), 1, None),
        replicas("scale-0ms-x2", 0, size(10_000, 1_500), 2, None),
        replicas("scale-0ms-x3", 0, size(10_000, 1_500), 3, None),
        // The same against a three-node cluster (`bench/run.sh --cluster`): what quorum
        // replication costs the broker, and the worker, per job.
        Scenario {
            broker: Broker::Cluster,
            ..replicas("scale-0ms-x3-cluster", 0, size(10_000, 1_500), 3, None)
        },
        // max_in_flight 64 at 100 ms: each replica is bounded at 640 jobs/s by design.
        replicas("scale-100ms-mif64-x1", 100, size(6_000, 1_500), 1, Some(64)),
        replicas("scale-100ms-mif64-x2", 100, size(6_000, 1_500), 2, Some(64)),
        replicas("scale-100ms-mif64-x3", 100, size(6_000, 1_500), 3, Some(64)),
    ]
}

fn amqp_prefix(scenario: &Scenario) -> String {
    format!("bench.{}", scenario.tag())
}

fn redis_prefix(ctx: &Ctx, scenario: &Scenario) -> String {
    format!("{}-{}", ctx.cli.redis_prefix, scenario.tag())
}

/// The broker URLs of the scenario's workers; the bench itself uses the first.
fn amqp_urls<'a>(ctx: &'a Ctx, scenario: &Scenario) -> Vec<&'a str> {
    match scenario.broker {
        Broker::Single => vec![ctx.cli.amqp_url.as_str()],
        Broker::Cluster => ctx
            .cli
            .cluster_amqp_urls
            .iter()
            .map(String::as_str)
            .collect(),
    }
}

/// The RabbitMQ processes whose CPU counts for the scenario (empty: every `beam.smp`).
fn rabbitmq_pids<'a>(ctx: &'a Ctx, scenario: &Scenario) -> &'a [u32] {
    match scenario.broker {
        Broker::Single => &ctx.cli.rabbitmq_pids,
        Broker::Cluster => &ctx.cli.cluster_rabbitmq_pids,
    }
}

/// The worker's configuration: defaults, except a Waspy channel pointed at the mock with a
/// rate limit so high it is consulted but never waits, and the bench's names.
fn worker_config(ctx: &Ctx, scenario: &Scenario, mock: &MockGateway, http_port: u16) -> String {
    let mut worker = String::new();
    if let Some(n) = scenario.max_in_flight {
        let _ = writeln!(worker, "max_in_flight = {n}");
    }
    if let Some(n) = scenario.prefetch {
        let _ = writeln!(worker, "prefetch = {n}");
    }
    let amqp = match scenario.broker {
        Broker::Single => format!("url = \"{}\"", ctx.cli.amqp_url),
        Broker::Cluster => format!("urls = {:?}", amqp_urls(ctx, scenario)),
    };
    format!(
        r#"[amqp]
{amqp}
prefix = "{amqp_prefix}"

[redis]
url = "{redis}"
prefix = "{redis_prefix}"

[worker]
{worker}
[http]
listen = "127.0.0.1:{http_port}"

[channels.{channel}]
provider = "waspy"
base_url = "{base_url}"
api_key_env = "{key_env}"
sender = "bench-phone-number-id"
# On but never limiting: 1M/s, and a burst that absorbs same-microsecond bookings so no
# job sleeps a rounded-up millisecond for a microsecond slot.
rate_per_second = 1000000
rate_burst = 1000
{retry}"#,
        amqp_prefix = amqp_prefix(scenario),
        redis = ctx.cli.redis_url,
        redis_prefix = redis_prefix(ctx, scenario),
        channel = load::CHANNEL,
        base_url = mock.url,
        key_env = procs::API_KEY_ENV,
        retry = scenario
            .retry_schedule
            .map(|r| format!("retry_schedule = {r}\n"))
            .unwrap_or_default(),
    )
}

/// Server-wide Redis command counters: (command → (calls, usec)).
async fn commandstats(ctx: &Ctx) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let mut conn = ctx.redis.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> u64 {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_string(), (field("calls="), field("usec=")));
    }
    Ok(out)
}

/// Delete every key under `prefix:` (SCAN, bounded batches).
async fn cleanup_redis(ctx: &Ctx, prefix: &str) -> anyhow::Result<()> {
    let mut conn = ctx.redis.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// CPU used so far by the mock gateway, RabbitMQ and Redis. RabbitMQ and Redis are shared
/// with whoever else uses them on this machine, so their share is an upper bound; RabbitMQ is
/// the scenario's broker when its pids were given, else every `beam.smp`.
#[derive(Debug, Clone, Copy, Default)]
struct Others {
    mock: Duration,
    rabbitmq: Duration,
    redis: Duration,
}

/// CPU used so far by these processes together (those gone count nothing).
fn cpu_of(ctx: &Ctx, pids: &[u32]) -> Duration {
    pids.iter()
        .filter_map(|p| procs::cpu_time(*p, ctx.clock_ticks).ok())
        .sum()
}

/// CPU used so far by the scenario's RabbitMQ.
fn rabbitmq_cpu(ctx: &Ctx, scenario: &Scenario) -> Duration {
    match rabbitmq_pids(ctx, scenario) {
        [] => cpu_of(ctx, &procs::pids_of("beam.smp")),
        pids => cpu_of(ctx, pids),
    }
}

impl Others {
    fn sample(ctx: &Ctx, scenario: &Scenario, mock: &MockGateway) -> Self {
        Self {
            mock: mock.pid().map_or(Duration::ZERO, |p| cpu_of(ctx, &[p])),
            rabbitmq: rabbitmq_cpu(ctx, scenario),
            redis: cpu_of(ctx, &procs::pids_of("redis-server")),
        }
    }
}

/// Worker and RabbitMQ CPU at one moment of a measured interval, with the jobs finished by
/// then: the steady part's CPU per job is read between two of these.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    finished: usize,
    worker: Duration,
    rabbitmq: Duration,
}

/// Worker and RabbitMQ CPU-ms per job between the samples where 10 % and 90 % of `wanted`
/// had finished: like steady jobs/s, blind to start-up and to a tail of a few slow jobs,
/// whose idle seconds would otherwise be charged to the whole run (a job waiting out a
/// 60 s lease adds 60 s of three idle brokers to the cluster's CPU per job).
fn steady_cpu(samples: &[CpuSample], wanted: usize) -> (f64, f64) {
    let at = |n: usize| samples.iter().find(|s| s.finished >= n);
    match (at(wanted / 10), at(wanted * 9 / 10)) {
        (Some(a), Some(b)) if b.finished > a.finished => {
            let jobs = (b.finished - a.finished) as f64;
            let ms = |x: Duration, y: Duration| x.saturating_sub(y).as_secs_f64() * 1e3 / jobs;
            (ms(b.worker, a.worker), ms(b.rabbitmq, a.rabbitmq))
        }
        _ => (0.0, 0.0),
    }
}

/// Measurements taken around a measured interval.
struct Probe {
    cpu: Duration,
    /// CPU of the other processes on the path, to see where a job's cost goes.
    others: Others,
    redis: BTreeMap<String, (u64, u64)>,
    /// The gateway's counters are cumulative; open-loop phases share one gateway.
    gateway: procs::MockStats,
}

async fn probe(
    ctx: &Ctx,
    scenario: &Scenario,
    workers: &[Worker],
    mock: &MockGateway,
) -> anyhow::Result<Probe> {
    let mut cpu = Duration::ZERO;
    for w in workers {
        cpu += procs::cpu_time(w.pid(), ctx.clock_ticks)?;
    }
    Ok(Probe {
        cpu,
        others: Others::sample(ctx, scenario, mock),
        redis: commandstats(ctx).await?,
        gateway: mock.stats().await?,
    })
}

/// What preloading the queue measured (nothing for open-loop scenarios).
#[derive(Debug, Clone, Copy, Default)]
struct Preload {
    jobs_per_s: f64,
    rabbitmq_cpu_ms_per_job: f64,
}

async fn run_scenario(
    ctx: &Ctx,
    scenario: &Scenario,
    capacity: Option<f64>,
) -> anyhow::Result<Vec<Row>> {
    let topology = Topology::with_tiers(
        &amqp_prefix(scenario),
        ctx.defaults.amqp.delivery_limit,
        &ctx.defaults.amqp.delay_tiers,
    );
    let connection = broker::connect(amqp_urls(ctx, scenario)[0], "mensajero-bench")
        .await
        .context("connecting to RabbitMQ")?;
    let collector = Collector::start(&connection, &topology).await?;
    let pids = ctx.cli.out.join("pids");
    let mock = MockGateway::start(&ctx.bin, scenario.gateway, &pids).await?;
    let mut load = Load::new(&connection, &topology).await?;
    let id_prefix = scenario.tag();
    let id_prefix = id_prefix.as_str();
    let mut preload = Preload::default();
    if scenario.jobs > 0 {
        let t = Instant::now();
        let rabbitmq = Others::sample(ctx, scenario, &mock).rabbitmq;
        load.preload(id_prefix, scenario.jobs).await?;
        let elapsed = t.elapsed().as_secs_f64();
        let cpu = Others::sample(ctx, scenario, &mock)
            .rabbitmq
            .saturating_sub(rabbitmq);
        preload = Preload {
            jobs_per_s: scenario.jobs as f64 / elapsed,
            rabbitmq_cpu_ms_per_job: cpu.as_secs_f64() * 1e3 / scenario.jobs as f64,
        };
        eprintln!("   preloaded {} jobs in {elapsed:.1} s", scenario.jobs);
    }

    // Service counters (gateway, Redis, other processes) before any worker runs: a worker
    // consumes the preloaded queue the moment it is ready, so a baseline taken after spawning
    // could miss the first jobs.
    let mut before = probe(ctx, scenario, &[], &mock).await?;
    let mut workers = Vec::new();
    for i in 0..scenario.replicas {
        let port = procs::free_port()?;
        let config = ctx.cli.out.join(format!("{id_prefix}-{i}.toml"));
        std::fs::write(&config, worker_config(ctx, scenario, &mock, port))?;
        let log = ctx.cli.out.join(format!("{id_prefix}-{i}.log"));
        workers.push(Worker::start(
            &ctx.bin,
            &config,
            port,
            &log,
            scenario.rust_log,
            &pids,
            ctx.cli.worker_wrapper.as_deref(),
        )?);
    }
    // The workers' CPU baseline right after spawn, before any job can be taken. It includes
    // start-up (a few ms of CPU), which errs on the pessimistic side.
    before.cpu = probe(ctx, scenario, &workers, &mock).await?.cpu;
    for w in &mut workers {
        w.wait_ready().await?;
    }

    let mut rows = Vec::new();
    let result = async {
        match &scenario.open_loop {
            None => {
                let ids: Vec<String> = (0..scenario.jobs)
                    .map(|n| format!("{id_prefix}-{n}"))
                    .collect();
                let mut row =
                    measure(ctx, scenario, &workers, &mock, &collector, &ids, before).await?;
                row.preload_jobs_per_s = preload.jobs_per_s;
                row.preload_rabbitmq_cpu_ms_per_job = preload.rabbitmq_cpu_ms_per_job;
                rows.push(row);
            }
            Some((fractions, duration, from)) => {
                let capacity = capacity
                    .with_context(|| format!("open loop needs the capacity of {from} first"))?;
                for fraction in fractions {
                    let rate = capacity * fraction;
                    let phase = format!("{id_prefix}-{:.0}pct", fraction * 100.0);
                    eprintln!("   open loop at {rate:.0} jobs/s for {duration:?}");
                    let before = probe(ctx, scenario, &workers, &mock).await?;
                    let published = load.open_loop(&phase, rate, *duration).await?;
                    let ids: Vec<String> = (0..published).map(|n| format!("{phase}-{n}")).collect();
                    let mut row =
                        measure(ctx, scenario, &workers, &mock, &collector, &ids, before).await?;
                    row.scenario =
                        format!("{} @{:.0}% ({rate:.0}/s)", row.scenario, fraction * 100.0);
                    rows.push(row);
                }
            }
        }
        anyhow::Ok(())
    }
    .await;

    for w in workers {
        if let Err(e) = w.stop().await {
            eprintln!("   {e:#}");
        }
    }
    mock.stop().await;
    collector.stop();
    if let Ok(channel) = connection.create_channel().await
        && let Err(e) = topology.delete(&channel).await
    {
        eprintln!("   deleting the scenario's queues: {e}");
    }
    let _ = connection.close(200, "bench done".into()).await;
    result?;
    Ok(rows)
}

/// Wait until every job in `ids` has a terminal outcome (or the time bound), then measure.
async fn measure(
    ctx: &Ctx,
    scenario: &Scenario,
    workers: &[Worker],
    mock: &MockGateway,
    collector: &Collector,
    ids: &[String],
    before: Probe,
) -> anyhow::Result<Row> {
    let wanted = ids.len();
    // Generous: 60 s plus 5 ms per job (200 jobs/s), and retried jobs come back from a
    // delay queue after 5–30 s.
    let bound = Duration::from_secs(90) + Duration::from_millis(5 * wanted as u64);
    let started = Instant::now();
    let mut conns_max = 0usize;
    let mut last_socket_sample = Instant::now() - Duration::from_secs(1);
    let mut samples = Vec::new();
    loop {
        let finished = {
            let data = collector.lock();
            ids.iter()
                .filter(|id| data.jobs.get(*id).is_some_and(|t| t.terminal > 0))
                .count()
        };
        samples.push(CpuSample {
            finished,
            worker: workers.iter().map(|w| cpu_of(ctx, &[w.pid()])).sum(),
            rabbitmq: rabbitmq_cpu(ctx, scenario),
        });
        if last_socket_sample.elapsed() >= Duration::from_millis(500) {
            conns_max = conns_max.max(procs::sockets(mock.port).0);
            last_socket_sample = Instant::now();
        }
        if finished >= wanted {
            break;
        }
        if started.elapsed() > bound {
            eprintln!("   time bound reached with {finished}/{wanted} jobs finished");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late duplicate outcomes would show up right after the last one: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = probe(ctx, scenario, workers, mock).await?;
    let (established, time_wait) = procs::sockets(mock.port);
    let (stats, base) = (&after.gateway, &before.gateway);
    let mut rss_kib = 0;
    for w in workers {
        rss_kib = rss_kib.max(procs::peak_rss_kib(w.pid())?);
    }

    let data = collector.lock();
    let tracks: Vec<&collect::Track> = ids.iter().filter_map(|id| data.jobs.get(id)).collect();
    let finished = tracks.iter().filter(|t| t.terminal > 0).count() as u64;
    let mut service: Vec<i64> = tracks
        .iter()
        .filter_map(|t| Some(t.sent_at? - t.queued_at?))
        .collect();
    let mut e2e: Vec<i64> = tracks
        .iter()
        .filter_map(|t| Some(t.sent_at? - t.published_at?))
        .collect();
    let mut done: Vec<i64> = tracks.iter().filter_map(|t| t.done_at).collect();
    done.sort_unstable();
    let first = tracks.iter().filter_map(|t| t.queued_at).min();
    let last = done.last().copied();
    let jobs_per_s = match (first, last) {
        (Some(a), Some(b)) if b > a => finished as f64 / ((b - a) as f64 / 1000.0),
        _ => 0.0,
    };
    let steady_jobs_per_s = if done.len() >= 10 {
        let (lo, hi) = (done.len() / 10, done.len() * 9 / 10);
        let span = (done[hi] - done[lo]) as f64 / 1000.0;
        if span > 0.0 {
            (hi - lo) as f64 / span
        } else {
            0.0
        }
    } else {
        jobs_per_s
    };
    let per_job = |x: f64| {
        if finished > 0 {
            x / finished as f64
        } else {
            0.0
        }
    };
    let mut redis_calls = 0u64;
    let mut redis_usec = 0u64;
    let mut redis_by_command = BTreeMap::new();
    for (name, (calls, usec)) in &after.redis {
        let (c0, u0) = before.redis.get(name).copied().unwrap_or((0, 0));
        let calls = calls.saturating_sub(c0);
        redis_calls += calls;
        redis_usec += usec.saturating_sub(u0);
        if calls > 0 {
            redis_by_command.insert(name.clone(), per_job(calls as f64));
        }
    }
    // Idempotency keys are the job ids (the jobs set none), so the gateway's per-key counts
    // for exactly these ids say how often each job reached it.
    let keys_requested_twice = ids
        .iter()
        .filter(|id| stats.requests_by_key.get(*id).is_some_and(|n| *n > 1))
        .count() as u64;
    let events: u64 = tracks
        .iter()
        .map(|t| u64::from(t.terminal) + u64::from(t.queued_at.is_some()))
        .sum();
    let (steady_cpu_ms_per_job, steady_rabbitmq_cpu_ms_per_job) = steady_cpu(&samples, wanted);
    Ok(Row {
        scenario: scenario.name.to_string(),
        round: scenario.round,
        broker: match scenario.broker {
            Broker::Single => "single",
            Broker::Cluster => "cluster",
        }
        .to_string(),
        replicas: scenario.replicas,
        jobs: wanted as u64,
        finished,
        jobs_per_s,
        steady_jobs_per_s,
        service_p50_ms: quantile(&mut service, 0.50),
        service_p99_ms: quantile(&mut service, 0.99),
        e2e_p50_ms: quantile(&mut e2e, 0.50),
        e2e_p99_ms: quantile(&mut e2e, 0.99),
        cpu_ms_per_job: per_job((after.cpu - before.cpu).as_secs_f64() * 1000.0),
        mock_cpu_ms_per_job: per_job((after.others.mock - before.others.mock).as_secs_f64() * 1e3),
        rabbitmq_cpu_ms_per_job: per_job(
            (after.others.rabbitmq.saturating_sub(before.others.rabbitmq)).as_secs_f64() * 1e3,
        ),
        redis_cpu_ms_per_job: per_job(
            (after.others.redis.saturating_sub(before.others.redis)).as_secs_f64() * 1e3,
        ),
        peak_rss_mib: rss_kib as f64 / 1024.0,
        lost: wanted as u64 - finished,
        duplicate_outcomes: tracks.iter().filter(|t| t.terminal > 1).count() as u64,
        duplicate_events: tracks.iter().map(|t| u64::from(t.duplicate_events)).sum(),
        failed: tracks.iter().filter(|t| t.failed > 0).count() as u64,
        gateway_requests: stats.requests - base.requests,
        gateway_sent: stats.sent - base.sent,
        gateway_replayed: stats.replayed - base.replayed,
        gateway_errors: stats.errors - base.errors,
        keys_requested_twice,
        outcomes_per_job: per_job(events as f64),
        redis_calls_per_job: per_job(redis_calls as f64),
        redis_usec_per_job: per_job(redis_usec as f64),
        redis_by_command,
        gateway_conns_max: conns_max.max(established),
        gateway_conns_time_wait: time_wait,
        wall_s: started.elapsed().as_secs_f64(),
        steady_cpu_ms_per_job,
        steady_rabbitmq_cpu_ms_per_job,
        preload_jobs_per_s: 0.0,
        preload_rabbitmq_cpu_ms_per_job: 0.0,
    })
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

/// A row's scenario, with its round when there were several.
fn label(r: &Row, multi: bool) -> String {
    if multi {
        format!("{} (round {})", r.scenario, r.round)
    } else {
        r.scenario.clone()
    }
}

/// The results as one Markdown table, plus the Redis commands per job by name.
fn table(rows: &[Row]) -> String {
    let multi = rows.iter().any(|r| r.round > 1);
    let mut out = String::new();
    out.push_str(
        "| scenario | jobs | jobs/s | steady jobs/s | svc p50 ms | svc p99 ms | e2e p50 ms | e2e p99 ms | CPU-ms/job | peak RSS MiB | lost | dup outcomes | dup events | failed | gw req/sent/replayed/err | redis cmds/job | outcomes/job | gw conns max/TIME-WAIT |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.3} | {:.1} | {} | {} | {} | {} | {}/{}/{}/{} | {:.2} | {:.2} | {}/{} |",
            label(r, multi),
            r.jobs,
            r.jobs_per_s,
            r.steady_jobs_per_s,
            ms(r.service_p50_ms),
            ms(r.service_p99_ms),
            ms(r.e2e_p50_ms),
            ms(r.e2e_p99_ms),
            r.cpu_ms_per_job,
            r.peak_rss_mib,
            r.lost,
            r.duplicate_outcomes,
            r.duplicate_events,
            r.failed,
            r.gateway_requests,
            r.gateway_sent,
            r.gateway_replayed,
            r.gateway_errors,
            r.redis_calls_per_job,
            r.outcomes_per_job,
            r.gateway_conns_max,
            r.gateway_conns_time_wait,
        );
    }
    out.push_str(
        "\nCPU-ms per job by process over the same interval (RabbitMQ and Redis are shared with \
         other users of this machine: upper bounds):\n\n\
         | scenario | worker | mock gateway | RabbitMQ | Redis |\n|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            label(r, multi),
            r.cpu_ms_per_job,
            r.mock_cpu_ms_per_job,
            r.rabbitmq_cpu_ms_per_job,
            r.redis_cpu_ms_per_job
        );
    }
    out.push_str(
        "\nRedis commands per job by command (server-wide delta; the Redis is shared):\n\n",
    );
    for r in rows {
        let by: Vec<String> = r
            .redis_by_command
            .iter()
            .filter(|(_, v)| **v >= 0.01)
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "- {}: {} (Redis CPU {:.1} µs/job)",
            label(r, multi),
            by.join(", "),
            r.redis_usec_per_job
        );
    }
    out
}

/// With `--rounds`: each round's rows against the round's first (the ratios compare runs of
/// the same few minutes, which the noise of a shared host affects alike), then each
/// scenario's range over the rounds.
fn rounds_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "\nBy round, against the round's first row (steady = between 10 % and 90 % of the jobs \
         finished, whole = worker spawn to the last outcome; RabbitMQ = the scenario's broker \
         processes; preload = the bench's confirmed publishing before the workers start; the \
         ratios are of the steady numbers):\n\n\
         | round | scenario | broker | steady jobs/s | worker CPU-ms/job steady (whole) | RabbitMQ CPU-ms/job steady (whole) | preload jobs/s | preload RabbitMQ CPU-ms/job | jobs/s × | worker CPU × | RabbitMQ CPU × |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let last = rows.iter().map(|r| r.round).max().unwrap_or(0);
    for round in 1..=last {
        let of_round: Vec<&Row> = rows.iter().filter(|r| r.round == round).collect();
        let Some(base) = of_round.first() else {
            continue;
        };
        for r in &of_round {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} |",
                r.round,
                r.scenario,
                r.broker,
                r.steady_jobs_per_s,
                r.steady_cpu_ms_per_job,
                r.cpu_ms_per_job,
                r.steady_rabbitmq_cpu_ms_per_job,
                r.rabbitmq_cpu_ms_per_job,
                r.preload_jobs_per_s,
                r.preload_rabbitmq_cpu_ms_per_job,
                ratio(r.steady_jobs_per_s, base.steady_jobs_per_s),
                ratio(r.steady_cpu_ms_per_job, base.steady_cpu_ms_per_job),
                ratio(
                    r.steady_rabbitmq_cpu_ms_per_job,
                    base.steady_rabbitmq_cpu_ms_per_job
                ),
            );
        }
    }
    out.push_str(
        "\nRange over the rounds (min–max):\n\n\
         | scenario | rounds | steady jobs/s | worker CPU-ms/job (steady) | RabbitMQ CPU-ms/job (steady) | preload jobs/s | preload RabbitMQ CPU-ms/job |\n\
         |---|---:|---|---|---|---|---|\n",
    );
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.scenario.as_str()) {
            names.push(&r.scenario);
        }
    }
    for name in names {
        let of: Vec<&Row> = rows.iter().filter(|r| r.scenario == name).collect();
        let range = |f: fn(&Row) -> f64, precision: usize| {
            let lo = of.iter().map(|r| f(r)).fold(f64::INFINITY, f64::min);
            let hi = of.iter().map(|r| f(r)).fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.precision$}–{hi:.precision$}")
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            of.len(),
            range(|r| r.steady_jobs_per_s, 0),
            range(|r| r.steady_cpu_ms_per_job, 3),
            range(|r| r.steady_rabbitmq_cpu_ms_per_job, 3),
            range(|r| r.preload_jobs_per_s, 0),
            range(|r| r.preload_rabbitmq_cpu_ms_per_job, 3),
        );
    }
    out
}

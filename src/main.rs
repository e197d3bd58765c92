//! The `mensajero` command: worker, operator tools, producer and mock gateway.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use mensajero::broker::{self, Producer, Topology};
use mensajero::config::{Config, MockOptions, Secret};
use mensajero::gateways::simulator as mock;
use mensajero::inbound::InboundType;
use mensajero::outcome::Outcome;

// jemalloc, not glibc's malloc: a job makes ~440 allocations, many of them past glibc's
// per-thread cache (task frames of ~4 KiB, 8 KiB HTTP buffers), and perf put ~27 % of the
// worker's CPU in glibc's bins and consolidation. With jemalloc the worker spends ~20 % less CPU
// per job at the same peak memory (bench/RESULTS.md, 26 Nov 2026).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's built-in options, read at its first allocation (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them).
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a 'static C string that nothing writes.
unsafe impl Sync for MallocConf {}

// Freed pages go back to the system within 250 ms instead of 10 s: ≈ 6 MiB less at the peak
// of 2,000 calls in flight, for no CPU cost beyond the noise at 0 or 100 ms. Returning them at
// once (0) costs 15-25 % CPU per job (bench/RESULTS.md).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:250".as_ptr());

#[derive(Parser)]
#[command(
    name = "mensajero",
    version,
    about = "Durable outbound WhatsApp message queue worker"
)]
struct Cli {
    /// Configuration file overlaid on the built-in defaults.
    #[arg(long, global = true, env = "MENSAJERO_CONFIG")]
    config: Option<PathBuf>,
    /// Log format; `auto` is human-readable on a terminal and JSON lines otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker until SIGTERM/SIGINT.
    Run,
    /// Declare the exchanges and queues (idempotent), then exit.
    Topology {
        /// Delete them instead (loses queued messages!).
        #[arg(long)]
        delete: bool,
    },
    /// Print the JSON Schema of a job (or, with --inbound, of an inbound event).
    Schema {
        /// The schema of inbound message events (`docs/inbound.schema.json`) instead.
        #[arg(long)]
        inbound: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Publish jobs (JSON lines from a file or stdin, or one job from flags) with confirms.
    Enqueue(EnqueueArgs),
    /// Cancel a job before it is sent, and say what was found. Exit code 0: cancelled (now or
    /// already); 3: too late (sent, failed, or a gateway call is in flight).
    Cancel(CancelArgs),
    /// Inspect, replay or purge the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print outcome events as they arrive.
    Outcomes(WatchArgs),
    /// Print inbound message events (customers' messages) as they arrive, one JSON line each.
    Inbound {
        /// Only messages that came in on this channel.
        #[arg(long, value_parser = parse_channel)]
        channel: Option<String>,
        /// Only messages of this type (`text`, `reply`, `image`, …).
        #[arg(long = "type", value_name = "TYPE", value_parser = parse_inbound_type)]
        kind: Option<InboundType>,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Run the gateway simulator as an HTTP server speaking every gateway's API, with
    /// `/_mock/stats` and `/_mock/script` (scripted errors) for tests.
    MockGateway {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Latency per request.
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        latency: Duration,
        /// Fraction of requests answered with --error-status.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// HTTP status of injected errors.
        #[arg(long, default_value_t = 503)]
        error_status: u16,
        /// POST status receipts of each send to this URL (e.g. a worker's /webhooks/{channel}),
        /// in the format of the API that was called.
        #[arg(long)]
        receipts_url: Option<String>,
        /// Send the `delivered` receipt this long after a send.
        #[arg(long, value_parser = humantime::parse_duration)]
        delivered_after: Option<Duration>,
        /// Send the `read` receipt this long after a send.
        #[arg(long, value_parser = humantime::parse_duration)]
        read_after: Option<Duration>,
        /// Post a customer's reply this long after a send (answering its first reply button,
        /// or a text), in the inbound format of the API that was called.
        #[arg(long, value_parser = humantime::parse_duration)]
        reply_after: Option<Duration>,
        /// Reply to every Nth send only.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        reply_every: u32,
        /// Name of the environment variable holding the webhook secret receipts are signed
        /// with (never the secret itself: command lines are visible to every local user).
        #[arg(long, value_name = "NAME")]
        webhook_secret_env: Option<String>,
    },
}

/// When a command that prints events as they arrive stops.
#[derive(clap::Args)]
struct WatchArgs {
    /// Stop after this many events.
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this long without an event.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle: Option<Duration>,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters (the queue is left as it was).
    List {
        #[command(flatten)]
        filter: DlqFilter,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the jobs exchange with a fresh attempt count.
    Replay {
        #[command(flatten)]
        filter: DlqFilter,
        /// Only say what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete dead letters older than a duration.
    Purge {
        /// Age, e.g. `7d`, `12h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct DlqFilter {
    /// Only dead letters with this reason.
    #[arg(long)]
    reason: Option<String>,
    /// Only the dead letter of this job id.
    #[arg(long)]
    id: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and report every problem at once.
    Check,
}

#[derive(clap::Args)]
struct EnqueueArgs {
    /// JSON-lines file of jobs (`-` for stdin). Without it, one job is built from the flags.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Publish even invalid jobs (for testing the worker's refusal path).
    #[arg(long)]
    no_validate: bool,
    /// Job id (flags mode).
    #[arg(long)]
    id: Option<String>,
    /// Channel (flags mode).
    #[arg(long)]
    channel: Option<String>,
    /// Recipient (flags mode).
    #[arg(long)]
    to: Option<String>,
    /// Text body (flags mode).
    #[arg(long)]
    text: Option<String>,
    /// Idempotency key (flags mode).
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["key", "id"])))]
struct CancelArgs {
    /// The channel the job was published for.
    #[arg(long)]
    channel: String,
    /// The job's idempotency key.
    #[arg(long)]
    key: Option<String>,
    /// The job's id (for a job that had no idempotency key of its own).
    #[arg(long)]
    id: Option<String>,
    /// Why, carried in the job's `failed` / `cancelled` outcome.
    #[arg(long)]
    reason: Option<String>,
}

/// Exit code of `mensajero cancel` when the job could not be cancelled any more.
const EXIT_TOO_LATE: u8 = 3;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            // A job's one span is already in `span`; the list would repeat it on every line.
            .with_span_list(false)
            .init();
    } else {
        // Colours only for a terminal: `--log-format text` into a file or a log collector
        // must not be full of escape codes.
        builder.with_ansi(terminal).init();
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match cli.command {
        Command::Schema { inbound } => {
            if inbound {
                print!("{}", mensajero::inbound::json_schema_text());
            } else {
                print!("{}", mensajero::job::json_schema_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => match Config::load(cli.config.as_deref()) {
            Ok(config) => {
                println!(
                    "configuration OK: {} channel(s): {}",
                    config.channels.len(),
                    config
                        .channels
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                eprint!("{problems}");
                Ok(ExitCode::from(2))
            }
        },
        Command::MockGateway {
            listen,
            latency,
            error_rate,
            error_status,
            receipts_url,
            delivered_after,
            read_after,
            reply_after,
            reply_every,
            webhook_secret_env,
        } => {
            let webhook_secret = match &webhook_secret_env {
                None => None,
                Some(var) => match std::env::var(var) {
                    Ok(value) if !value.is_empty() => Some(Secret::new(value)),
                    // Names the variable, never a value.
                    _ => {
                        anyhow::bail!("--webhook-secret-env: environment variable {var} is not set")
                    }
                },
            };
            let listener = mensajero::http::bind_listener(listen)
                .with_context(|| format!("binding {listen}"))?;
            let address = listener.local_addr()?;
            // The first line on stdout tells scripts where it listens (useful with port 0).
            println!("mock gateway listening on http://{address}");
            let options = MockOptions {
                latency,
                error_rate,
                error_status,
                receipts_url,
                delivered_after,
                read_after,
                reply_after,
                reply_every,
                ..MockOptions::default()
            };
            let core = mock::MockCore::with_webhook_secret(options, webhook_secret);
            let shutdown = shutdown_signal();
            mock::serve(listener, core, async move { shutdown.cancelled().await }).await?;
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let config = if matches!(command, Command::Run) {
                load(cli.config.as_deref())?
            } else {
                // Tools never call a gateway: they need no channel secrets.
                Config::load_for_tools(cli.config.as_deref())
                    .map_err(|problems| anyhow::anyhow!("{problems}"))?
            };
            match command {
                Command::Run => {
                    if config.channels.is_empty() {
                        anyhow::bail!(
                            "no channels configured: add [channels.<name>] to your --config file"
                        );
                    }
                    mensajero::worker::run(config, shutdown_signal()).await?;
                }
                Command::Topology { delete } => topology(&config, delete).await?,
                Command::Enqueue(args) => return enqueue(&config, args).await,
                Command::Outcomes(watch) => outcomes(&config, watch).await?,
                Command::Inbound {
                    channel,
                    kind,
                    watch,
                } => inbound(&config, channel.as_deref(), kind, watch).await?,
                Command::Dlq { command } => return dlq(&config, command).await,
                Command::Cancel(args) => return cancel(&config, args).await,
                Command::Schema { .. } | Command::Config { .. } | Command::MockGateway { .. } => {
                    unreachable!("handled above")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|problems| anyhow::anyhow!("{problems}"))
}

/// Cancelled on SIGTERM or SIGINT.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutdown requested");
        trigger.cancel();
    });
    token
}

async fn topology(config: &Config, delete: bool) -> anyhow::Result<()> {
    let topology = Topology::from_config(&config.amqp);
    let connection = broker::connect(&config.amqp.url, "mensajero-topology")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    if delete {
        topology.delete(&channel).await?;
        println!("deleted {topology:#?}");
    } else {
        topology.declare(&channel).await?;
        println!("declared {topology:#?}");
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}

async fn cancel(config: &Config, args: CancelArgs) -> anyhow::Result<std::process::ExitCode> {
    use mensajero::cancel::{Canceller, Target};
    let target = match (args.key, args.id) {
        (Some(key), None) => Target::Key(key),
        (None, Some(id)) => Target::Id(id),
        // clap's group already refuses both and neither.
        _ => anyhow::bail!("give exactly one of --key and --id"),
    };
    let canceller = Canceller::connect(config)
        .await
        .context("connecting to Redis")?;
    let answer = canceller.cancel(&args.channel, target, args.reason).await?;
    println!("{answer}");
    Ok(if answer.is_cancelled() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(EXIT_TOO_LATE)
    })
}

async fn enqueue(config: &Config, args: EnqueueArgs) -> anyhow::Result<std::process::ExitCode> {
    let lines: Vec<String> = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            std::io::stdin().lock().lines().collect::<Result<_, _>>()?
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => {
            let (Some(channel), Some(to), Some(text)) = (&args.channel, &args.to, &args.text)
            else {
                anyhow::bail!("give --file, or --channel, --to and --text");
            };
            let id = args
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let mut job = serde_json::json!({
                "id": id, "channel": channel, "to": to,
                "message": {"type": "text", "text": {"body": text}},
            });
            if let Some(key) = &args.idempotency_key {
                job["idempotency_key"] = key.clone().into();
            }
            vec![job.to_string()]
        }
    };
    let connection = broker::connect(&config.amqp.url, "mensajero-enqueue")
        .await
        .context("connecting to RabbitMQ")?;
    let producer = Producer::new(&connection, Topology::from_config(&config.amqp)).await?;
    let (mut published, mut rejected) = (0usize, 0usize);
    for (number, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let result = if args.no_validate {
            producer
                .publish_raw(line.as_bytes(), mensajero::job::Priority::Transactional)
                .await
                .map(|()| None)
                .map_err(Into::into)
        } else {
            producer.enqueue(line.as_bytes()).await.map(Some)
        };
        match result {
            Ok(job) => {
                published += 1;
                if let Some(job) = job {
                    println!(
                        "published {} ({} to {})",
                        job.id,
                        job.message.type_name(),
                        job.channel
                    );
                }
            }
            Err(e) => {
                rejected += 1;
                println!("line {}: rejected: {e}", number + 1);
            }
        }
    }
    connection.close(200, "done".into()).await?;
    println!("{published} published, {rejected} rejected");
    Ok(if rejected == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

async fn outcomes(config: &Config, watch: WatchArgs) -> anyhow::Result<()> {
    let topology = Topology::from_config(&config.amqp);
    let feed = Feed {
        name: "outcomes",
        exchange: &topology.outcomes_exchange,
        binding: "#".into(),
        print: print_outcome,
    };
    watch_events(config, &topology, feed, watch).await
}

async fn inbound(
    config: &Config,
    channel: Option<&str>,
    kind: Option<InboundType>,
    watch: WatchArgs,
) -> anyhow::Result<()> {
    let topology = Topology::from_config(&config.amqp);
    let feed = Feed {
        name: "inbound",
        exchange: &topology.inbound_exchange,
        binding: inbound_binding(channel, kind),
        print: print_inbound,
    };
    watch_events(config, &topology, feed, watch).await
}

/// The binding on `<type>.<channel>` routing keys that `--channel` and `--type` ask for.
fn inbound_binding(channel: Option<&str>, kind: Option<InboundType>) -> String {
    match (kind, channel) {
        (None, None) => "#".into(),
        (kind, channel) => format!(
            "{}.{}",
            kind.map_or("*", InboundType::as_str),
            channel.unwrap_or("*")
        ),
    }
}

fn parse_inbound_type(value: &str) -> Result<InboundType, String> {
    InboundType::ALL
        .into_iter()
        .find(|kind| kind.as_str() == value)
        .ok_or_else(|| {
            let names: Vec<_> = InboundType::ALL.iter().map(|k| k.as_str()).collect();
            format!("not an inbound type; one of: {}", names.join(", "))
        })
}

fn parse_channel(value: &str) -> Result<String, String> {
    // A dot, `*` or `#` would change what the binding matches instead of naming a channel.
    if mensajero::config::valid_channel_name(value) {
        Ok(value.to_owned())
    } else {
        Err("channel names are 1–64 of [A-Za-z0-9_-]".into())
    }
}

/// An event stream to watch: the exchange, the binding on it, how to print one event.
struct Feed<'a> {
    /// Names the connection in the broker's management views.
    name: &'static str,
    exchange: &'a str,
    binding: String,
    print: fn(&mut dyn Write, &[u8]) -> std::io::Result<()>,
}

/// Print `feed`'s events to stdout as they arrive, until `watch`'s limits or a signal.
async fn watch_events(
    config: &Config,
    topology: &Topology,
    feed: Feed<'_>,
    watch: WatchArgs,
) -> anyhow::Result<()> {
    let connection = broker::connect(&config.amqp.url, &format!("mensajero-{}", feed.name))
        .await
        .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    topology.declare(&channel).await?;
    // A private, temporary queue: watching must never hold back or steal anyone's events.
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
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            feed.exchange.into(),
            feed.binding.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // Events published before the binding exists are not seen: scripts wait for this line.
    tracing::info!(exchange = %feed.exchange, binding = %feed.binding, "watching");
    let shutdown = shutdown_signal();
    let mut seen = 0usize;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(watch.idle.unwrap_or(Duration::MAX / 4)) => break,
            next = consumer.next() => next,
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        match (feed.print)(&mut std::io::stdout().lock(), &delivery.data) {
            // The reader went away (`| head -1`): as for any Unix filter, that ends the watch.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            result => result?,
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        seen += 1;
        if watch.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// One outcome as a table row.
fn print_outcome(out: &mut dyn Write, body: &[u8]) -> std::io::Result<()> {
    let Ok(o) = serde_json::from_slice::<Outcome>(body) else {
        return writeln!(out, "{}", String::from_utf8_lossy(body));
    };
    let detail = match (&o.error, &o.provider_message_id, &o.original_job_id) {
        (Some(e), _, _) => format!("{}/{}: {}", e.class.as_str(), e.code, e.message),
        (None, _, Some(original)) => format!("duplicate of {original}"),
        (None, Some(id), None) => format!("provider id {id}"),
        _ => String::new(),
    };
    writeln!(
        out,
        "{:<28} {:<24} attempt {} {}",
        o.routing_key(),
        o.job_id,
        o.attempt,
        detail
    )
}

/// One inbound event as one line of JSON.
fn print_inbound(out: &mut dyn Write, body: &[u8]) -> std::io::Result<()> {
    // Any JSON passes, not only what parses as this version's `InboundEvent`: a newer worker's
    // extra fields must reach the reader, not be refused here.
    match serde_json::from_slice::<serde_json::Value>(body) {
        // The worker's compact JSON goes out as it came, its fields in their published order.
        Ok(_) if !body.contains(&b'\n') && !body.contains(&b'\r') => {
            out.write_all(body)?;
            out.write_all(b"\n")
        }
        Ok(event) => writeln!(out, "{event}"),
        // stdout stays JSON lines for `jq` and the like; anything else goes to the log.
        Err(e) => {
            let body = String::from_utf8_lossy(body);
            tracing::warn!(error = %e, %body, "an inbound message that is not JSON: not printed");
            Ok(())
        }
    }
}

async fn dlq(config: &Config, command: DlqCommand) -> anyhow::Result<std::process::ExitCode> {
    use mensajero::dlq::{self, Filter};
    let filter = |f: DlqFilter| Filter {
        reason: f.reason,
        job_id: f.id,
    };
    if let DlqCommand::Purge { yes: false, .. } = command {
        eprintln!("purge deletes dead letters for good: add --yes to confirm");
        return Ok(std::process::ExitCode::from(2));
    }
    let topology = Topology::from_config(&config.amqp);
    let connection = broker::connect(&config.amqp.url, "mensajero-dlq")
        .await
        .context("connecting to RabbitMQ")?;
    let (views, json, summary) = match command {
        DlqCommand::List {
            filter: f,
            limit,
            json,
        } => {
            let views = dlq::list(&connection, &topology, &filter(f), limit).await?;
            let summary = format!("{} dead letter(s)", views.len());
            (views, json, summary)
        }
        DlqCommand::Replay {
            filter: f,
            dry_run,
            json,
        } => {
            let views = dlq::replay(&connection, &topology, &filter(f), dry_run).await?;
            let verb = if dry_run { "would replay" } else { "replayed" };
            let summary = format!("{verb} {} dead letter(s)", views.len());
            (views, json, summary)
        }
        DlqCommand::Purge {
            older_than, json, ..
        } => {
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
            let views = dlq::purge(&connection, &topology, cutoff).await?;
            let summary = format!("purged {} dead letter(s)", views.len());
            (views, json, summary)
        }
    };
    connection.close(200, "done".into()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        print!("{}", dlq::table(&views));
        println!("{summary}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

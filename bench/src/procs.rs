//! The processes under test: the mock gateway and worker replicas, started from the release
//! binary exactly as an operator would, and measured from the outside through `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;

/// Environment variable holding the (fake) Waspy API key: the mock only checks that a
/// Bearer token is present, and secrets never go in configuration files.
pub const API_KEY_ENV: &str = "MENSAJERO_BENCH_API_KEY";

/// How long a worker may take to say it is ready: it declares the whole topology first,
/// which on a loaded 2-core machine can take seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// SIGTERM, then this long for the worker's graceful drain before SIGKILL. Longer than the
/// worker's own 30 s `shutdown_grace` so a clean exit is always possible.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A free loopback port (bound and released; the tiny race is acceptable on a bench box).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Append a child's pid to `pids` (one per line), so `bench/run.sh` can stop exactly the
/// processes this run started if the bench itself is killed before it can.
fn record_pid(pids: &Path, pid: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pids)
        .with_context(|| format!("opening {}", pids.display()))?;
    writeln!(file, "{pid}")?;
    Ok(())
}

/// `target/release/mensajero mock-gateway` as a child process.
pub struct MockGateway {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`, as printed by the gateway on its first line.
    pub url: String,
    /// The port, to find its sockets in `ss` output.
    pub port: u16,
}

/// How the mock gateway behaves.
#[derive(Debug, Clone, Copy)]
pub struct MockBehaviour {
    /// Added to every request.
    pub latency: Duration,
    /// Fraction of requests answered with `error_status`.
    pub error_rate: f64,
    /// HTTP status of injected errors (503 transient, 429 rate limited).
    pub error_status: u16,
}

impl MockGateway {
    /// Start it on a free loopback port and wait for its "listening" line.
    pub async fn start(bin: &Path, behaviour: MockBehaviour, pids: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut child = tokio::process::Command::new(bin)
            .args(["--log-format", "json", "mock-gateway", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--latency")
            .arg(format!("{}ms", behaviour.latency.as_millis()))
            .arg("--error-rate")
            .arg(behaviour.error_rate.to_string())
            .arg("--error-status")
            .arg(behaviour.error_status.to_string())
            // Its per-request logs are not what we measure; keep them off the terminal.
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} mock-gateway", bin.display()))?;
        if let Some(pid) = child.id() {
            record_pid(pids, pid)?;
        }
        let stdout = child.stdout.take().context("mock gateway stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("mock gateway did not start within 30 s")??
            .context("mock gateway exited before listening")?;
        let url = line
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .with_context(|| format!("unexpected first line from the mock gateway: {line}"))?
            .to_string();
        Ok(Self { child, url, port })
    }

    /// Its process id, for `/proc`.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `GET /_mock/stats`.
    pub async fn stats(&self) -> anyhow::Result<MockStats> {
        let stats = reqwest::get(format!("{}/_mock/stats", self.url))
            .await?
            .error_for_status()?
            .json::<MockStats>()
            .await?;
        Ok(stats)
    }

    /// Stop it (SIGKILL is fine: it holds nothing durable).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The mock gateway's counters (a subset of `mensajero::gateways::simulator::Stats`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MockStats {
    /// Requests received, errors included.
    pub requests: u64,
    /// Messages actually sent (first successful request per key).
    pub sent: u64,
    /// Requests answered from the idempotency cache (a resend the gateway deduplicated).
    pub replayed: u64,
    /// Injected errors.
    pub errors: u64,
    /// Requests per idempotency key.
    pub requests_by_key: std::collections::HashMap<String, u64>,
}

/// One `mensajero run` process.
pub struct Worker {
    child: Child,
    /// Its `/readyz` listener.
    pub http_port: u16,
}

impl Worker {
    /// Start `bin run --config config`, logging (JSON, as in production) to `log`.
    pub fn start(
        bin: &Path,
        config: &Path,
        http_port: u16,
        log: &Path,
        rust_log: Option<&str>,
        pids: &Path,
        wrapper: Option<&str>,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log)
            .with_context(|| format!("creating worker log {}", log.display()))?;
        // A wrapper such as valgrind execs the worker in the same process, so the pid (and
        // `/proc`) still belong to the worker.
        let mut words = wrapper.unwrap_or_default().split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        command
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json", "run"])
            .env(API_KEY_ENV, "bench-api-key")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {} run", bin.display()))?;
        record_pid(pids, child.id())?;
        Ok(Self { child, http_port })
    }

    /// The process id, for `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `/readyz` answers 200 (connected to RabbitMQ and Redis).
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("worker exited before it was ready: {status}");
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("worker not ready within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (the worker's graceful shutdown), SIGKILL if it overstays.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // std has no portable "send SIGTERM"; kill(1) avoids a libc dependency.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("worker ignored SIGTERM for {STOP_TIMEOUT:?}; killed");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A bench that errors out must not leave workers consuming from the shared broker.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32, clock_ticks: u64) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after its ')' are fixed.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is index 0, so utime (field 14) is 11 and stime (field 15) is 12.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks as f64,
    ))
}

/// Peak resident set size (`VmHWM`) in KiB, from `/proc/<pid>/status`.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmHWM")?
        .parse()
        .map_err(Into::into)
}

/// Process ids of every process named `name` (`pidof`), to read their CPU time; empty when
/// none runs.
pub fn pids_of(name: &str) -> Vec<u32> {
    Command::new("pidof")
        .arg(name)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `getconf CLK_TCK` (the unit of utime/stime); 100 on every Linux we know of.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// TCP sockets with `port` at either end, by state, from `ss`: established connections show
/// how many the worker keeps open, TIME-WAIT ones how many it has closed (no reuse).
pub fn sockets(port: u16) -> (usize, usize) {
    let Ok(out) = Command::new("ss").args(["-Htan"]).output() else {
        return (0, 0);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let suffix = format!(":{port}");
    let (mut established, mut time_wait) = (0, 0);
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 {
            continue;
        }
        // Count client-side sockets only (peer is the gateway), so each connection counts once.
        if !cols[4].ends_with(&suffix) {
            continue;
        }
        match cols[0] {
            "ESTAB" => established += 1,
            "TIME-WAIT" => time_wait += 1,
            _ => {}
        }
    }
    (established, time_wait)
}

/// Where the release binary is, relative to the workspace root.
pub fn default_bin() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("release/mensajero")
}

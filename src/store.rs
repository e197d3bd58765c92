//! What every Redis-backed store shares: the error type, the clock fragment their Lua scripts
//! start from, and the small conversions they all need.
//!
//! [`crate::dedupe`], [`crate::ratelimit`] and [`crate::tracking`] depend on this module and
//! on nothing of each other's but what the dedupe claim borrows from the rate limiter (it
//! books a slot in the same round trip).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    ServerErrorKind, Value,
};

/// Errors talking to Redis; the caller retries them (the job is not at fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer or refused.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A script answered something this code does not understand.
    #[error("unexpected reply from a redis script: {0}")]
    Protocol(String),
}

impl StoreError {
    /// A reply (or a stored value) this code cannot read.
    pub fn protocol(what: impl std::fmt::Display) -> Self {
        Self::Protocol(what.to_string())
    }
}

/// The first line of a Lua script that needs the time: `now` in milliseconds from Redis' own
/// clock (`TIME`), so workers with skewed clocks agree on leases and poll times.
pub const NOW_MS: &str = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// The same in microseconds, for the rate limiter's finer slots.
pub const NOW_US: &str =
    "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";

/// A duration as whole milliseconds for a script argument: at least 1, since Redis refuses a
/// zero `PX` / `PEXPIRE`, and saturating.
pub fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

/// A duration as whole microseconds for a script argument, saturating at what Lua's numbers
/// and Redis' integers hold.
pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(i64::MAX as u128) as u64
}

/// Where the configured Redis is: one server, a master that Sentinels watch, or a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a managed endpoint that fails over behind one address).
    Node(String),
    /// A master found through these Sentinels under `master_name`, followed through failovers.
    Sentinel {
        /// The Sentinels' URLs.
        sentinels: Vec<String>,
        /// The name the Sentinels monitor the master under.
        master_name: String,
        /// Replicas that must have each write (`WAIT`) before it counts as done; 0: none.
        wait_replicas: u32,
    },
    /// A Redis Cluster, found through any of these nodes.
    Cluster(Vec<String>),
}

/// How long one Redis command may take (per node under Redis Cluster), as
/// `ConnectionManager` allows by default: a dead master must fail calls fast so that their
/// caller's retry finds the new one.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long connecting to one Redis node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a Redis Cluster request may take with its own retries and redirections (a
/// replica's promotion takes the cluster's `cluster-node-timeout`; our callers retry beyond).
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the configured Redis that every store clones (cheaply: all clones share
/// the connections underneath).
#[derive(Clone)]
pub struct Redis(Conn);

#[derive(Clone)]
enum Conn {
    /// Reconnects to its one address by itself.
    Node(ConnectionManager),
    /// The Sentinels' current master, replaced when it fails or turns read-only.
    Sentinel(Arc<SentinelMaster>),
    /// Follows MOVED/ASK and refreshes its slot map when a master fails over.
    Cluster(Arc<ClusterNodes>),
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URLs: they may carry a password.
        let kind = match &self.0 {
            Conn::Node(_) => "node",
            Conn::Sentinel(_) => "sentinel",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_tuple("Redis").field(&kind).finish()
    }
}

impl From<ConnectionManager> for Redis {
    fn from(manager: ConnectionManager) -> Self {
        Self(Conn::Node(manager))
    }
}

impl Redis {
    /// Connect once to `target`; the caller retries (see the worker's start-up backoff).
    pub async fn connect(target: &RedisTarget) -> Result<Self, RedisError> {
        Ok(Self(match target {
            RedisTarget::Node(url) => {
                Conn::Node(ConnectionManager::new(redis::Client::open(url.as_str())?).await?)
            }
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                wait_replicas,
            } => Conn::Sentinel(Arc::new(
                SentinelMaster::connect(sentinels, master_name, *wait_replicas).await?,
            )),
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .overall_response_timeout(Some(CLUSTER_REQUEST_TIMEOUT))
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Conn::Cluster(Arc::new(ClusterNodes {
                    client,
                    conn: Renewable::new(conn, CLUSTER_REBUILD_EVERY),
                }))
            }
        }))
    }

    /// Whether this is a Redis Cluster, where a script's keys must share one hash slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Conn::Cluster(_))
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => Box::pin(async move {
                let (generation, mut conn) = c.conn.current();
                let result = conn.req_packed_command(cmd).await;
                if let Err(e) = &result {
                    c.on_error(generation, e).await;
                }
                result
            }),
            Conn::Sentinel(s) => Box::pin(async move {
                let (generation, current) = s.current.current();
                let result = match &current.waits {
                    Some(waits) if writes(cmd) => waits.replicated(cmd).await,
                    _ => current.conn.clone().req_packed_command(cmd).await,
                };
                if let Err(e) = &result {
                    s.on_error(generation, e).await;
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => Box::pin(async move {
                let (generation, mut conn) = c.conn.current();
                let result = conn.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &result {
                    c.on_error(generation, e).await;
                }
                result
            }),
            // mensajero's stores write through single commands and scripts only, which WAIT
            // covers above; a pipeline goes as it is.
            Conn::Sentinel(s) => Box::pin(async move {
                let (generation, current) = s.current.current();
                let result = current
                    .conn
                    .clone()
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                if let Err(e) = &result {
                    s.on_error(generation, e).await;
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.conn.current().1.get_db(),
            Conn::Sentinel(s) => s.current.current().1.conn.get_db(),
        }
    }
}

/// A Redis Cluster connection, made again when it stops answering.
///
/// After a master's `kill -9` and its replica's promotion, the cluster client has been seen
/// (under CPU load, in the fault campaign) to follow the new slot map and then time out every
/// request for about 100 s without trying anything else (a clean-clone CI run, twice at
/// stop 16); a new connection starts over from the nodes' current slot map.
struct ClusterNodes {
    client: ClusterClient,
    conn: Renewable<ClusterConnection>,
}

/// The least time between two new Redis Cluster connections: longer than a request's own
/// retries, so a failover's ordinary timeouts rarely cause one.
const CLUSTER_REBUILD_EVERY: Duration = Duration::from_secs(5);

impl ClusterNodes {
    /// After a timeout on generation `generation`: a new connection (once for a burst).
    async fn on_error(&self, generation: u64, e: &RedisError) {
        if !e.is_timeout() {
            return;
        }
        match self
            .conn
            .renew(generation, |_| self.client.get_async_connection())
            .await
        {
            Some(Ok(())) => {
                tracing::warn!("redis: the cluster connection timed out; made a new one")
            }
            Some(Err(e)) => tracing::debug!(error = %e, "redis: no new cluster connection yet"),
            None => {}
        }
    }
}

/// A connection that is replaced when it fails.
///
/// Every replacement bumps a generation: a burst of calls failing on one connection replaces
/// it once (a call that failed on an older one finds it replaced already), and two tries are
/// at least `every` apart, so a server that stays down is not hammered.
struct Renewable<T> {
    /// The connection in use and its generation.
    current: std::sync::RwLock<(u64, T)>,
    /// When a replacement was last tried; held while trying, so one call tries at a time.
    tried: tokio::sync::Mutex<tokio::time::Instant>,
    /// The least time between two tries.
    every: Duration,
}

impl<T: Clone> Renewable<T> {
    fn new(conn: T, every: Duration) -> Self {
        Self {
            current: std::sync::RwLock::new((0, conn)),
            tried: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            every,
        }
    }

    fn current(&self) -> (u64, T) {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Replace generation `generation` with what `make` builds from it; `None` when nothing
    /// was tried (replaced already, or tried less than `every` ago).
    async fn renew<F, Fut>(&self, generation: u64, make: F) -> Option<Result<(), RedisError>>
    where
        F: FnOnce(T) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let mut tried = self.tried.lock().await;
        let (now, conn) = self.current();
        if now != generation || tried.elapsed() < self.every {
            return None;
        }
        *tried = tokio::time::Instant::now();
        let replacement = make(conn).await;
        Some(replacement.map(|conn| {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = (generation + 1, conn);
        }))
    }
}

/// The master that the Sentinels name, and the connection to it.
///
/// The `redis` crate's `ConnectionManager` reconnects to the address it was made with, which
/// after a failover is the demoted master (read-only, or gone); this asks the Sentinels again
/// instead. The call that met the failure still fails: its caller retries it, as it retries any
/// Redis error, and by then the connection points at the new master.
struct SentinelMaster {
    /// Asked for the master's address; behind a lock because its calls need `&mut`.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The connections in use, replaced when the master moves.
    current: Renewable<Current>,
    /// Asking has failed since the last success: only the first failure is a warning.
    failing: std::sync::atomic::AtomicBool,
    /// `[redis] wait_replicas`.
    wait_replicas: u32,
}

/// The connections to one master.
#[derive(Clone)]
struct Current {
    /// Shared by every call that needs no `WAIT`.
    conn: MultiplexedConnection,
    /// With `wait_replicas`: the connections writes go through.
    waits: Option<Arc<WaitPool>>,
}

/// Whether `cmd` may write: mensajero writes through scripts and `SET`/`DEL` only.
fn writes(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => [&b"EVALSHA"[..], b"EVAL", b"SET", b"DEL"]
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w)),
        _ => false,
    }
}

/// How long `WAIT` waits for the replicas; past it the write does not count as done.
const WAIT_TIMEOUT: Duration = Duration::from_millis(200);

/// Writes in flight at once under `wait_replicas`, each on a connection of its own.
const WAIT_CONNECTIONS: usize = 16;

/// Connections to the master that each carry one write and its `WAIT` at a time: `WAIT`
/// blocks the connection it runs on until a replica acknowledges, so on the shared multiplexed
/// connection every call would queue behind it (measured: while a demoted master re-synced,
/// every Redis call timed out).
struct WaitPool {
    client: redis::Client,
    replicas: u32,
    idle: std::sync::Mutex<Vec<MultiplexedConnection>>,
    slots: tokio::sync::Semaphore,
}

impl WaitPool {
    /// `cmd`, then `WAIT`: fewer than `replicas` acknowledgements within [`WAIT_TIMEOUT`] fail
    /// the call, so its caller does it again (on the master the Sentinels name by then). A
    /// master that was failed over and not yet demoted would otherwise acknowledge writes that
    /// the promoted replica never sees.
    async fn replicated(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        let _slot =
            self.slots.acquire().await.map_err(|_| {
                RedisError::from((ErrorKind::Io, "redis: the write pool is closed"))
            })?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                self.client
                    .get_multiplexed_async_connection_with_config(&connection_config())
                    .await?
            }
        };
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone())
            .cmd("WAIT")
            .arg(self.replicas)
            .arg(millis(WAIT_TIMEOUT));
        let mut replies = conn.req_packed_commands(&pipe, 0, 2).await?.into_iter();
        // The connection is sound whatever the replies say.
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        let (Some(reply), Some(acked)) = (replies.next(), replies.next()) else {
            return Err(RedisError::from((
                ErrorKind::Io,
                "redis: WAIT reply missing",
            )));
        };
        let reply = reply.extract_error()?;
        let not_replicated = |acked: String| {
            RedisError::from((
                ErrorKind::Io,
                "write not replicated",
                format!("{acked} of {} replicas acknowledged it", self.replicas),
            ))
        };
        match acked {
            Value::Int(n) if n >= i64::from(self.replicas) => Ok(reply),
            Value::Int(n) => Err(not_replicated(n.to_string())),
            other => Err(not_replicated(format!("{other:?}"))),
        }
    }
}

/// Timeouts for every connection to a Sentinel group's master.
fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The least time between two questions to the Sentinels.
const SENTINEL_ASK_EVERY: Duration = Duration::from_millis(250);

impl SentinelMaster {
    async fn connect(
        sentinels: &[String],
        master_name: &str,
        wait_replicas: u32,
    ) -> Result<Self, RedisError> {
        // The master is logged in to (user, password, database) as the first Sentinel URL
        // says, as in the usual deployments where Sentinels and master share one password.
        let first = sentinels
            .first()
            .ok_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no sentinels")))?;
        let login = first
            .as_str()
            .into_connection_info()?
            .redis_settings()
            .clone();
        let mut client = SentinelClient::build(
            sentinels.iter().map(String::as_str).collect(),
            master_name.to_string(),
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(login)),
            SentinelServerType::Master,
        )?;
        let current = Self::master(&mut client, None, wait_replicas).await?;
        Ok(Self {
            sentinels: tokio::sync::Mutex::new(client),
            current: Renewable::new(current, SENTINEL_ASK_EVERY),
            failing: std::sync::atomic::AtomicBool::new(false),
            wait_replicas,
        })
    }

    /// Connections to the master the Sentinels name now (they check it answers as master),
    /// replacing `previous`. Its write pool is kept when the master is the same server: a
    /// write no replica took (a replica down) asks the Sentinels again, and reopening 16
    /// connections on every such question would only churn; a broken pooled connection has
    /// already been dropped.
    async fn master(
        client: &mut SentinelClient,
        previous: Option<&Current>,
        wait_replicas: u32,
    ) -> Result<Current, RedisError> {
        let master = client.async_get_client().await?;
        let conn = master
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await?;
        let same_server = |pool: &&Arc<WaitPool>| {
            pool.client.get_connection_info().addr() == master.get_connection_info().addr()
        };
        let kept = previous.and_then(|p| p.waits.as_ref().filter(same_server).cloned());
        let waits = kept.or_else(|| {
            (wait_replicas > 0).then(|| {
                Arc::new(WaitPool {
                    client: master,
                    replicas: wait_replicas,
                    idle: std::sync::Mutex::new(Vec::new()),
                    slots: tokio::sync::Semaphore::new(WAIT_CONNECTIONS),
                })
            })
        });
        Ok(Current { conn, waits })
    }

    /// After an error on generation `generation`: when it says the master is gone or demoted,
    /// ask the Sentinels for the master and connect to it (once for a burst of such errors).
    async fn on_error(&self, generation: u64, e: &RedisError) {
        use std::sync::atomic::Ordering::Relaxed;
        // Io includes a write no replica acknowledged under `wait_replicas`.
        let lost = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            // Under `min-replicas-to-write`, a master that was failed over (its replica
            // promoted, itself not yet demoted) refuses writes: the master has moved.
            || e.code() == Some("NOREPLICAS");
        if !lost {
            return;
        }
        let renewed = self
            .current
            .renew(generation, |previous| async move {
                let mut client = self.sentinels.lock().await;
                Self::master(&mut client, Some(&previous), self.wait_replicas).await
            })
            .await;
        match renewed {
            Some(Ok(())) => {
                self.failing.store(false, Relaxed);
                tracing::info!("redis: connected to the master the sentinels name");
            }
            Some(Err(e)) if !self.failing.swap(true, Relaxed) => {
                tracing::warn!(error = %e, "redis: sentinels name no reachable master yet");
            }
            Some(Err(e)) => tracing::debug!(error = %e, "redis: still no reachable master"),
            None => {}
        }
    }
}

/// The names of a store's keys: `<prefix>:<kind>:<channel>…`.
///
/// Under Redis Cluster the channel is a hash tag (`<prefix>:<kind>:{<channel>}…`): every
/// script touches keys of one channel only (a dedupe entry with the channel's rate-limit
/// cells, a tracking record with the channel's poll set), and a script's keys must share a
/// slot. One channel's keys therefore live on one shard. Elsewhere the names stay as they
/// always were, so an upgrade finds the records written before it.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    tagged: bool,
}

impl Keys {
    /// Names under `prefix`, for `redis`.
    pub fn new(prefix: &str, redis: &Redis) -> Self {
        Self::with_tags(prefix, redis.is_cluster())
    }

    fn with_tags(prefix: &str, tagged: bool) -> Self {
        Self {
            prefix: prefix.to_string(),
            tagged,
        }
    }

    /// `<prefix>:<kind>:<channel>`, the stem of every key of `kind` for `channel`.
    pub fn channel(&self, kind: &str, channel: &str) -> String {
        if self.tagged {
            format!("{}:{kind}:{{{channel}}}", self.prefix)
        } else {
            format!("{}:{kind}:{channel}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_redis_cluster_puts_the_channel_in_a_hash_tag() {
        let plain = Keys::with_tags("mensajero", false);
        assert_eq!(
            plain.channel("dedupe", "waspy-ar"),
            "mensajero:dedupe:waspy-ar"
        );
        let tagged = Keys::with_tags("mensajero", true);
        let dedupe = format!("{}:order-1847", tagged.channel("dedupe", "waspy-ar"));
        let rate = format!("{}:to:5491126032641", tagged.channel("rate", "waspy-ar"));
        assert_eq!(dedupe, "mensajero:dedupe:{waspy-ar}:order-1847");
        // Redis Cluster hashes only what is inside the first {...}: the same slot for both.
        let tag = |key: &str| key[key.find('{').unwrap()..=key.find('}').unwrap()].to_string();
        assert_eq!(tag(&dedupe), tag(&rate));
    }

    fn refused() -> RedisError {
        RedisError::from((ErrorKind::Io, "refused"))
    }

    #[tokio::test]
    async fn a_burst_of_failures_on_one_connection_replaces_it_once() {
        let conn = Arc::new(Renewable::new("first", Duration::ZERO));
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Eight calls failed on the first connection at once.
        let burst = (0..8).map(|_| {
            let (conn, made) = (conn.clone(), made.clone());
            tokio::spawn(async move {
                conn.renew(0, |_| async {
                    made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok("second")
                })
                .await
            })
        });
        let tried: Vec<_> = futures_util::future::join_all(burst).await;
        let tried = tried.into_iter().filter(|t| t.as_ref().unwrap().is_some());
        assert_eq!(tried.count(), 1);
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(conn.current(), (1, "second"));
        // A call that failed on the first connection finds it replaced already.
        assert!(conn.renew(0, |_| async { Ok("third") }).await.is_none());
        assert_eq!(conn.current(), (1, "second"));
    }

    #[tokio::test(start_paused = true)]
    async fn tries_to_replace_a_connection_are_spaced_out() {
        let conn = Renewable::new("first", Duration::from_secs(3600));
        // Just made: a failure now is not a reason to make another at once.
        assert!(conn.renew(0, |_| async { Ok("second") }).await.is_none());

        let conn = Renewable::new("first", Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let failed = conn.renew(0, |_| async { Err(refused()) }).await;
        assert!(matches!(failed, Some(Err(_))));
        assert_eq!(
            conn.current(),
            (0, "first"),
            "a failed try keeps what there was"
        );
        assert!(conn.renew(0, |_| async { Ok("second") }).await.is_none());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(
            conn.renew(0, |_| async { Ok("second") }).await,
            Some(Ok(()))
        ));
        assert_eq!(conn.current(), (1, "second"));
    }
}

//! The local clusters of `scripts/cluster.sh` for campaigns: started for a test, faults
//! injected through the script, stopped (by process id) when dropped.

use std::collections::HashMap;

/// The parts of `scripts/cluster.sh` a test started; `down` when dropped.
pub struct LocalCluster {
    parts: Vec<&'static str>,
    env: HashMap<String, String>,
}

impl LocalCluster {
    /// Run `scripts/cluster.sh` with `args`.
    pub fn script(args: &[&str]) -> std::process::Output {
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh"))
            .args(args)
            .output()
            .expect("run scripts/cluster.sh")
    }

    /// Start `parts` (`rabbit`, `sentinel`, `cluster`); `None`, with the reason printed, where
    /// one cannot start here (the test then skips).
    pub fn up(parts: &[&'static str]) -> Option<Self> {
        let mut cluster = Self {
            parts: Vec::new(),
            env: HashMap::new(),
        };
        for part in parts {
            let up = Self::script(&["up", part]);
            if !up.status.success() {
                eprintln!(
                    "SKIPPED: the local {part} did not start: {}",
                    String::from_utf8_lossy(&up.stderr)
                );
                return None; // dropping `cluster` stops what did start
            }
            cluster.parts.push(part);
        }
        let dir = std::env::var("MENSAJERO_CLUSTER_DIR")
            .unwrap_or_else(|_| "/tmp/mensajero-cluster".into());
        let env = std::fs::read_to_string(format!("{dir}/env")).expect("cluster env file");
        cluster.env = env
            .lines()
            .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
            .collect();
        Some(cluster)
    }

    /// [`LocalCluster::up`] for async tests: off the runtime's threads, since it waits for
    /// the processes.
    pub async fn start(parts: &'static [&'static str]) -> Option<Self> {
        tokio::task::spawn_blocking(move || Self::up(parts))
            .await
            .expect("cluster start-up")
    }

    /// Stop what was started, off the runtime's threads, since `down` waits for the processes.
    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .expect("cluster down");
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.env
            .get(var)
            .unwrap_or_else(|| panic!("{var} in the cluster env file"))
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    /// The RabbitMQ nodes' AMQP URLs, node 1 first.
    pub fn amqp_urls(&self) -> Vec<String> {
        self.list("MENSAJERO_CLUSTER_AMQP_URLS")
    }

    /// The Sentinels' URLs and the name they watch the master under.
    pub fn sentinels(&self) -> (Vec<String>, String) {
        (
            self.list("MENSAJERO_SENTINEL_URLS"),
            self.env["MENSAJERO_SENTINEL_MASTER_NAME"].clone(),
        )
    }

    /// The Redis servers the Sentinels watch (the first starts as the master).
    pub fn sentinel_redis_urls(&self) -> Vec<String> {
        self.list("MENSAJERO_SENTINEL_REDIS_URLS")
    }

    /// Set Redis' `min-replicas-to-write` on the Sentinel group's servers (both: their roles
    /// swap at a failover): with 1, a master no replica follows refuses writes (`NOREPLICAS`).
    pub async fn require_replicas(&self, n: u32) {
        for url in self.sentinel_redis_urls() {
            let mut conn = redis::Client::open(url.as_str())
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("a Sentinel group server");
            let () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("min-replicas-to-write")
                .arg(n)
                .arg("min-replicas-max-lag")
                .arg(10)
                .query_async(&mut conn)
                .await
                .expect("CONFIG SET min-replicas-to-write");
        }
    }

    /// The `[redis]` lines of a worker using the Sentinel group.
    pub fn sentinel_toml(&self) -> String {
        let (urls, master_name) = self.sentinels();
        format!("sentinels = {urls:?}\nmaster_name = {master_name:?}\n")
    }

    /// The Redis Cluster's nodes' URLs.
    pub fn redis_cluster_urls(&self) -> Vec<String> {
        self.list("MENSAJERO_REDIS_CLUSTER_URLS")
    }

    /// Which of the Redis Cluster's three slot ranges (as `cluster.sh` numbers them) holds
    /// `key`.
    pub async fn slot_range_of(&self, key: &str) -> &'static str {
        let nodes = self.redis_cluster_urls();
        let mut conn = redis::Client::open(nodes[0].as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("a Redis Cluster node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        match slot {
            0..=5460 => "1",
            5461..=10922 => "2",
            _ => "3",
        }
    }

    /// The `[redis]` lines of a worker using the Redis Cluster.
    pub fn redis_cluster_toml(&self) -> String {
        format!("cluster = {:?}\n", self.redis_cluster_urls())
    }

    /// Run a fault (`kill rabbit 2`, `failover`, …) and return what it printed.
    pub fn fault(&self, args: &[&str]) -> String {
        let out = Self::script(args);
        assert!(
            out.status.success(),
            "cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for part in &self.parts {
            let _ = Self::script(&["down", part]);
        }
    }
}

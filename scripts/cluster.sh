#!/usr/bin/env bash
# Local clusters for tests and fault campaigns, on loopback ports of their own, next to (never
# instead of) the default RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379:
#   rabbit    RabbitMQ cluster of three nodes c1/c2/c3@localhost, AMQP on 127.0.0.1:5681-5683
#             (Erlang distribution on 25681-25683), guest/guest
#   sentinel  Redis master 6391 + replica 6392, watched by three sentinels 26391-26393
#             (master name "mensajero", quorum 2)
#   cluster   Redis Cluster, three masters + three replicas on 7001-7006 (bus ports 17001-17006)
#
# Usage: scripts/cluster.sh up     [rabbit|sentinel|cluster|all]  start (default all), print the URLs
#        scripts/cluster.sh down   [rabbit|sentinel|cluster|all]  stop what `up` started, drop its state
#        scripts/cluster.sh status                                each component, its health
#        scripts/cluster.sh env                                   the URL variables again
#        scripts/cluster.sh wait   [rabbit|sentinel|cluster|all]  block until healthy again after a fault
#        scripts/cluster.sh kill rabbit N          kill -9 node cN (N = 1..3)
#        scripts/cluster.sh stop rabbit N          stop node cN cleanly (rabbitmqctl stop), as a
#                                                  rolling restart does
#        scripts/cluster.sh start rabbit N         restart node cN; it rejoins the cluster
#        scripts/cluster.sh kill redis-master      kill -9 the master the sentinels currently report
#        scripts/cluster.sh start redis PORT       restart 6391/6392 (it comes back as a replica)
#                                                  or a sentinel 26391-26393
#        scripts/cluster.sh failover               SENTINEL FAILOVER mensajero, waits for the switch
#        scripts/cluster.sh failover cluster N     CLUSTER FAILOVER on a replica of the master serving
#                                                  the Nth slot range (1..3), waits for the switch
#        scripts/cluster.sh kill cluster-master N  kill -9 the master serving the Nth slot range (1..3)
#        scripts/cluster.sh start cluster-node PORT  restart a Redis Cluster node (7001-7006)
#        scripts/cluster.sh rabbitmqctl N ARGS...  rabbitmqctl aimed at cN, with the cluster's cookie
#
# Everything (configs, data, logs, pidfiles, the Erlang cookie, the env file) lives in the state dir
# ${MENSAJERO_CLUSTER_DIR:-/tmp/mensajero-cluster}. Tests can `. "$dir/env"` to get the URLs.
# Processes are only ever stopped by the pid this script recorded, after checking that the pid's
# working directory is inside the state dir: nothing matches processes by name, so the default
# services (and a stale pidfile whose number was reused) are never hit.
set -euo pipefail

STATE_DIR=$(realpath -m "${MENSAJERO_CLUSTER_DIR:-/tmp/mensajero-cluster}")
MARKER=.mensajero-cluster # only a folder holding this file is ever rm -rf'ed
WAIT_SECS=${MENSAJERO_CLUSTER_WAIT_SECS:-90}

RABBIT_NODES=(1 2 3)
RABBIT_USER=rabbitmq
# The real scripts, not the /usr/sbin wrappers: run as root, those `su rabbitmq`, which resets HOME
# to /var/lib/rabbitmq and so picks the default node's Erlang cookie instead of ours.
RABBIT_BIN=${MENSAJERO_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

SENTINEL_REDIS_PORTS=(6391 6392) # master, then replica (at start; failovers swap them)
SENTINEL_PORTS=(26391 26392 26393)
MASTER_NAME=mensajero
CLUSTER_PORTS=(7001 7002 7003 7004 7005 7006)

# ---------------------------------------------------------------------------------------------
# Small helpers

say() { printf 'cluster.sh: %s\n' "$*"; }
warn() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() {
  warn "$*"
  exit 1
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

port_busy() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# Refuse to start over something that already listens: it is not ours (ours were checked first).
require_free_ports() {
  local port
  for port in "$@"; do
    if port_busy "$port"; then die "port $port is already in use by another process; not starting"; fi
  done
}

# The pid recorded in a pidfile, printed only if that process is alive and is one of ours: its
# working directory is inside the state dir (Redis chdir()s to its `dir`; the RabbitMQ nodes are
# started from their own folder). A stale pidfile whose number was reused fails the check.
live_pid() {
  local file=$1 pid cwd
  [[ -s $file ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [[ -n $pid ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [[ $cwd == "$STATE_DIR"/* ]] || return 1
  printf '%s\n' "$pid"
}

# Wait (up to $2 tenths of a second) for a pid to disappear.
pid_gone_within() {
  local pid=$1 tenths=$2 i
  for ((i = 0; i < tenths; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$pid" 2>/dev/null
}

# SIGTERM, SIGKILL after 10 s; returns once the process is gone.
stop_pid() {
  local pid=$1 what=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  pid_gone_within "$pid" 100 && return 0
  warn "$what (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  pid_gone_within "$pid" 50 || die "$what (pid $pid) is still alive"
}

# kill -9, the fault the campaigns inject, and wait for the process to be gone.
kill9_pid() {
  local pid=$1 what=$2
  kill -KILL "$pid"
  pid_gone_within "$pid" 50 || die "$what (pid $pid) survived SIGKILL"
}

# Poll a check until it succeeds or $1 seconds pass. The check runs in a condition, where
# `set -e` is off, so checks return their status explicitly.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      warn "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

ensure_state_dir() {
  if [[ -d $STATE_DIR && ! -e $STATE_DIR/$MARKER && -n $(ls -A "$STATE_DIR") ]]; then
    die "$STATE_DIR exists and was not made by this script; set MENSAJERO_CLUSTER_DIR elsewhere"
  fi
  mkdir -p "$STATE_DIR"
  touch "$STATE_DIR/$MARKER"
  # The RabbitMQ nodes run as another user, who must be able to walk in.
  chmod 755 "$STATE_DIR"
}

# rm -rf, but only inside a state dir this script made.
remove_dir() {
  local dir=$1
  [[ -e $dir ]] || return 0
  if [[ ! -e $STATE_DIR/$MARKER || ($dir != "$STATE_DIR" && $dir != "$STATE_DIR"/*) ]]; then
    die "refusing to remove $dir: $STATE_DIR has no $MARKER"
  fi
  rm -rf -- "$dir"
}

need_cmd() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null || die "$c is not installed (scripts/services.sh installs RabbitMQ and Redis)"; done
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ: three nodes, each with its own ports, config, data, logs and pidfile, all sharing one
# Erlang cookie of their own and the machine's epmd (port 4369, where the default node is
# registered too: epmd is a name server, each node just adds its name).

rabbit_node() { printf 'c%s@localhost' "$1"; }
rabbit_dir() { printf '%s/rabbit/c%s' "$STATE_DIR" "$1"; }
rabbit_amqp_port() { printf '%s' $((5680 + $1)); }
rabbit_dist_port() { printf '%s' $((25680 + $1)); }
rabbit_home() { printf '%s/rabbit/home' "$STATE_DIR"; }

# Run a command, from folder $1, as the user the nodes run as. As root that is `rabbitmq`, like
# the default node: the files the nodes write stay theirs, and Erlang accepts the cookie file
# only from its owner. runuser resets HOME, which is why callers pass it again through env.
as_rabbit() {
  local dir=$1
  shift
  if ((EUID == 0)); then
    (cd "$dir" && runuser -u "$RABBIT_USER" -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

# The environment of node N, used for the server and for every CLI call aimed at it.
#   HOME                   selects the Erlang cookie: $STATE_DIR/rabbit/home/.erlang.cookie,
#                          not /var/lib/rabbitmq's, so these nodes and the default one cannot
#                          reach each other by mistake; the CLI must use the very same one.
#   RABBITMQ_CONF_ENV_FILE keeps /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost) out.
#   ERL_FLAGS              Erlang distribution on loopback only, like the default node.
rabbit_env() {
  local n=$1 d
  d=$(rabbit_dir "$n")
  RABBIT_ENV=(
    HOME="$(rabbit_home)"
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf"
    RABBITMQ_NODENAME="$(rabbit_node "$n")"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$(rabbit_amqp_port "$n")"
    RABBITMQ_DIST_PORT="$(rabbit_dist_port "$n")"
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$d/mnesia"
    RABBITMQ_LOG_BASE="$d/log"
    RABBITMQ_PID_FILE="$d/pid"
    ERL_EPMD_ADDRESS=127.0.0.1
    ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
  )
}

# rabbitmqctl N ARGS...: the CLI aimed at node cN (always -n: never the default node).
rabbitmqctl_n() {
  local n=$1
  shift
  rabbit_env "$n"
  as_rabbit "$(rabbit_dir "$n")" env "${RABBIT_ENV[@]}" "$RABBIT_BIN/rabbitmqctl" -n "$(rabbit_node "$n")" "$@"
}

rabbit_pid() { live_pid "$(rabbit_dir "$1")/pid"; }

rabbit_write_node() {
  local n=$1 d
  d=$(rabbit_dir "$n")
  mkdir -p "$d/mnesia" "$d/log"
  cat >"$d/rabbitmq.conf" <<EOF
# Node $(rabbit_node "$n") of the mensajero test cluster (written by scripts/cluster.sh).
listeners.tcp.default = 127.0.0.1:$(rabbit_amqp_port "$n")
# guest may log in from loopback only, and loopback is all these nodes listen on.
loopback_users.guest = true
log.console = false
log.file.level = info
EOF
  # No plugins at all (no management UI): lighter and faster to boot. The file is an Erlang term.
  echo '[].' >"$d/enabled_plugins"
  echo '# Empty on purpose: keeps /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost) out.' >"$d/rabbitmq-env.conf"
}

rabbit_start_node() {
  local n=$1 d
  d=$(rabbit_dir "$n")
  rm -f "$d/pid"
  rabbit_env "$n"
  # -detached forks the node and returns at once; `rabbitmqctl wait` then follows the pidfile.
  as_rabbit "$d" env "${RABBIT_ENV[@]}" "$RABBIT_BIN/rabbitmq-server" -detached >>"$d/log/start.out" 2>&1
}

rabbit_wait_node() {
  local n=$1
  if ! rabbitmqctl_n "$n" -q wait "$(rabbit_dir "$n")/pid" --timeout "$WAIT_SECS" >/dev/null; then
    die "$(rabbit_node "$n") did not boot; see $(rabbit_dir "$n")/log"
  fi
}

# rabbitmqctl with its output kept in the node's log folder: a join prints harmless errors
# (tracked-connection tables of a node whose app is stopped) that would only alarm readers.
rabbit_ctl_logged() {
  local n=$1 log
  shift
  log="$(rabbit_dir "$n")/log/rabbitmqctl.out"
  echo "# rabbitmqctl -n $(rabbit_node "$n") $*" >>"$log"
  rabbitmqctl_n "$n" -q "$@" >>"$log" 2>&1 || die "rabbitmqctl -n $(rabbit_node "$n") $* failed; see $log"
}

# The running cluster members as node N sees them, one a line (nothing if N does not answer).
rabbit_running_nodes() {
  { rabbitmqctl_n "$1" -q cluster_status --formatter json 2>/dev/null || true; } |
    grep -o '"running_nodes":\[[^]]*\]' | grep -o 'c[0-9]@localhost' | sort || true
}

# Healthy: every node is up and c1 sees all three running in one cluster.
rabbit_healthy() {
  local n
  for n in "${RABBIT_NODES[@]}"; do rabbit_pid "$n" >/dev/null || return 1; done
  [[ $(rabbit_running_nodes 1 | wc -l) -eq ${#RABBIT_NODES[@]} ]]
}

rabbit_count_alive() {
  local n alive=0
  for n in "${RABBIT_NODES[@]}"; do
    if rabbit_pid "$n" >/dev/null; then alive=$((alive + 1)); fi
  done
  printf '%s' "$alive"
}

rabbit_up() {
  case $(rabbit_count_alive) in
    0) ;;
    "${#RABBIT_NODES[@]}")
      say "rabbit: already up, reusing it"
      wait_for "$WAIT_SECS" "the RabbitMQ cluster" rabbit_healthy || exit 1
      return 0
      ;;
    *) die "rabbit: only some nodes are up; 'start rabbit N' them or 'down rabbit' first" ;;
  esac
  [[ -x $RABBIT_BIN/rabbitmq-server ]] || die "no $RABBIT_BIN/rabbitmq-server (set MENSAJERO_RABBITMQ_BIN)"
  ((EUID != 0)) || id -u "$RABBIT_USER" >/dev/null 2>&1 || die "no '$RABBIT_USER' user to run the nodes as"
  local n ports=()
  for n in "${RABBIT_NODES[@]}"; do ports+=("$(rabbit_amqp_port "$n")" "$(rabbit_dist_port "$n")"); done
  require_free_ports "${ports[@]}"

  ensure_state_dir
  remove_dir "$STATE_DIR/rabbit" # leftovers of a run whose nodes died
  mkdir -p "$(rabbit_home)"
  # A cookie of our own (hex, so any Erlang accepts it), readable by its owner only.
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$(rabbit_home)/.erlang.cookie"
  chmod 400 "$(rabbit_home)/.erlang.cookie"
  for n in "${RABBIT_NODES[@]}"; do rabbit_write_node "$n"; done
  # If no epmd answers yet, the first node starts one; it is shared machine infrastructure, so
  # `down` only asks it to exit (epmd -kill), which it refuses while any node is registered.
  if ! epmd -names >/dev/null 2>&1; then touch "$STATE_DIR/rabbit/epmd-started-here"; fi
  if ((EUID == 0)); then
    chown -R "$RABBIT_USER:" "$STATE_DIR/rabbit"
    runuser -u "$RABBIT_USER" -- test -w "$STATE_DIR/rabbit/c1" ||
      die "user $RABBIT_USER cannot write in $STATE_DIR (a parent folder closed to it?); set MENSAJERO_CLUSTER_DIR"
  fi

  say "rabbit: starting $(rabbit_node 1), $(rabbit_node 2), $(rabbit_node 3)"
  # The nodes boot in parallel; each is then waited for.
  for n in "${RABBIT_NODES[@]}"; do rabbit_start_node "$n"; done
  for n in "${RABBIT_NODES[@]}"; do rabbit_wait_node "$n"; done
  # Joins one at a time: each one changes the membership the next one reads from c1.
  for n in "${RABBIT_NODES[@]:1}"; do
    say "rabbit: $(rabbit_node "$n") joins $(rabbit_node 1)"
    rabbit_ctl_logged "$n" stop_app
    rabbit_ctl_logged "$n" join_cluster "$(rabbit_node 1)"
    rabbit_ctl_logged "$n" start_app
  done
  wait_for "$WAIT_SECS" "three running RabbitMQ nodes" rabbit_healthy || exit 1
  say "rabbit: cluster of ${#RABBIT_NODES[@]} running nodes"
}

rabbit_stop_node() {
  local n=$1 d pid
  d=$(rabbit_dir "$n")
  pid=$(rabbit_pid "$n") || return 0
  # The clean way first: `rabbitmqctl stop <pidfile>` returns once that OS process has exited.
  if ! rabbitmqctl_n "$n" -q stop "$d/pid" >/dev/null 2>&1; then
    warn "rabbit: rabbitmqctl stop failed for $(rabbit_node "$n"); stopping pid $pid by signal"
  fi
  if kill -0 "$pid" 2>/dev/null; then stop_pid "$pid" "$(rabbit_node "$n")"; fi
}

rabbit_down() {
  [[ -d $STATE_DIR/rabbit ]] || return 0
  local n
  # In parallel: the data is thrown away, so no node needs to outlive the others.
  for n in "${RABBIT_NODES[@]}"; do rabbit_stop_node "$n" & done
  wait
  for n in "${RABBIT_NODES[@]}"; do
    if rabbit_pid "$n" >/dev/null; then die "rabbit: $(rabbit_node "$n") is still running"; fi
  done
  if [[ -e $STATE_DIR/rabbit/epmd-started-here ]]; then
    epmd -kill >/dev/null 2>&1 || say "rabbit: epmd (started by c1) still serves other nodes; left running"
  fi
  remove_dir "$STATE_DIR/rabbit"
  say "rabbit: stopped"
}

check_rabbit_n() {
  if [[ ! ${1:-} =~ ^[1-9]$ ]] || (($1 > ${#RABBIT_NODES[@]})); then die "N must be 1..${#RABBIT_NODES[@]}"; fi
  [[ -d $(rabbit_dir "$1") ]] || die "rabbit is not set up; run 'up rabbit' first"
}

rabbit_kill() {
  local n=$1 pid
  check_rabbit_n "$n"
  pid=$(rabbit_pid "$n") || die "$(rabbit_node "$n") is not running"
  kill9_pid "$pid" "$(rabbit_node "$n")"
  say "rabbit: killed $(rabbit_node "$n") (pid $pid, kill -9); 'start rabbit $n' brings it back"
}

rabbit_stop() {
  local n=$1 pid
  check_rabbit_n "$n"
  pid=$(rabbit_pid "$n") || die "$(rabbit_node "$n") is not running"
  # With the pidfile, `stop` returns only once the node's process has exited.
  rabbitmqctl_n "$n" -q stop "$(rabbit_dir "$n")/pid" >/dev/null ||
    die "rabbitmqctl stop of $(rabbit_node "$n") failed"
  say "rabbit: stopped $(rabbit_node "$n") (pid $pid, rabbitmqctl stop); 'start rabbit $n' brings it back"
}

rabbit_restart() {
  local n=$1
  check_rabbit_n "$n"
  if rabbit_pid "$n" >/dev/null; then
    say "rabbit: $(rabbit_node "$n") is already running"
    return 0
  fi
  require_free_ports "$(rabbit_amqp_port "$n")" "$(rabbit_dist_port "$n")"
  rabbit_start_node "$n"
  rabbit_wait_node "$n"
  # A member that was killed rejoins on its own at boot: its mnesia folder remembers the cluster.
  wait_for "$WAIT_SECS" "three running RabbitMQ nodes" rabbit_healthy || exit 1
  say "rabbit: $(rabbit_node "$n") is back; running: $(rabbit_running_nodes 1 | paste -sd ' ')"
}

rabbit_status() {
  if [[ ! -d $STATE_DIR/rabbit ]]; then
    echo "rabbit: down (not set up)"
    return 0
  fi
  local n pid seen=""
  echo "rabbit:"
  for n in "${RABBIT_NODES[@]}"; do
    if pid=$(rabbit_pid "$n"); then
      printf '  %-14s up    pid %-8s amqp 127.0.0.1:%s  dist %s\n' "$(rabbit_node "$n")" "$pid" "$(rabbit_amqp_port "$n")" "$(rabbit_dist_port "$n")"
      [[ -n $seen ]] || seen=$n
    else
      printf '  %-14s down\n' "$(rabbit_node "$n")"
    fi
  done
  if [[ -n $seen ]]; then
    echo "  running cluster members (as $(rabbit_node "$seen") sees them): $(rabbit_running_nodes "$seen" | paste -sd ' ')"
  fi
}

# ---------------------------------------------------------------------------------------------
# Redis, shared by the sentinel group and the cluster.

redis_dir() {
  local port=$1
  if [[ -d $STATE_DIR/sentinel/$port ]]; then
    printf '%s/sentinel/%s' "$STATE_DIR" "$port"
  else
    printf '%s/cluster/%s' "$STATE_DIR" "$port"
  fi
}

redis_pid() { live_pid "$(redis_dir "$1")/redis.pid"; }

rcli() {
  local port=$1
  shift
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

redis_answers() { [[ $(rcli "$1" ping 2>/dev/null) == PONG ]]; }

# Settings every Redis process here shares: loopback only; no persistence (throwaway test data);
# daemonized, with pid and log files in its own folder, which is also its working directory (what
# live_pid checks). Sentinels rewrite this file, so it stays writable and in the state dir.
redis_write_conf() {
  local port=$1 d
  d=$(redis_dir "$port")
  mkdir -p "$d"
  cat >"$d/redis.conf" <<EOF
# Written by scripts/cluster.sh (mensajero test clusters).
port $port
bind 127.0.0.1
daemonize yes
pidfile "$d/redis.pid"
logfile "$d/redis.log"
dir "$d"
save ""
appendonly no
EOF
}

redis_start() {
  local port=$1 d p sentinel_flag=()
  d=$(redis_dir "$port")
  rm -f "$d/redis.pid"
  for p in "${SENTINEL_PORTS[@]}"; do [[ $port != "$p" ]] || sentinel_flag=(--sentinel); done
  (cd "$d" && redis-server "$d/redis.conf" "${sentinel_flag[@]}") >/dev/null ||
    die "redis on $port did not start; see $d/redis.log"
  wait_for 20 "redis on $port" redis_started "$port" || die "redis on $port did not start; see $d/redis.log"
}

redis_started() { redis_pid "$1" >/dev/null && redis_answers "$1"; }

redis_stop() {
  local port=$1 pid
  pid=$(redis_pid "$port") || return 0
  stop_pid "$pid" "redis on $port"
}

redis_count_alive() {
  local port alive=0
  for port in "$@"; do
    if redis_pid "$port" >/dev/null; then alive=$((alive + 1)); fi
  done
  printf '%s' "$alive"
}

# `role` of a Redis server: master, or "slave of HOST:PORT (link up|down)".
redis_role() {
  local info role
  info=$(rcli "$1" info replication 2>/dev/null | tr -d '\r') || return 1
  role=$(sed -n 's/^role://p' <<<"$info")
  if [[ $role == slave ]]; then
    printf 'replica of %s:%s, link %s' "$(sed -n 's/^master_host://p' <<<"$info")" \
      "$(sed -n 's/^master_port://p' <<<"$info")" "$(sed -n 's/^master_link_status://p' <<<"$info")"
  else
    printf '%s' "$role"
  fi
}

check_port_of() {
  local port=$1 p
  shift
  for p in "$@"; do [[ $port != "$p" ]] || return 0; done
  die "PORT must be one of: $*"
}

# ---------------------------------------------------------------------------------------------
# Redis Sentinel: master 6391, replica 6392, sentinels 26391-26393.

sentinel_write_confs() {
  local port
  for port in "${SENTINEL_REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"; do
    mkdir -p "$STATE_DIR/sentinel/$port"
    redis_write_conf "$port"
  done
  echo "replicaof 127.0.0.1 ${SENTINEL_REDIS_PORTS[0]}" >>"$STATE_DIR/sentinel/${SENTINEL_REDIS_PORTS[1]}/redis.conf"
  for port in "${SENTINEL_PORTS[@]}"; do
    # Failover quickly (tests wait on it), but not on a busy machine's hiccup.
    cat >>"$STATE_DIR/sentinel/$port/redis.conf" <<EOF
sentinel monitor $MASTER_NAME 127.0.0.1 ${SENTINEL_REDIS_PORTS[0]} 2
sentinel down-after-milliseconds $MASTER_NAME 2000
sentinel failover-timeout $MASTER_NAME 10000
sentinel parallel-syncs $MASTER_NAME 1
EOF
  done
}

# "HOST PORT" of the master, as the first sentinel that answers reports it.
sentinel_master_addr() {
  local port addr
  for port in "${SENTINEL_PORTS[@]}"; do
    redis_pid "$port" >/dev/null || continue
    addr=$(rcli "$port" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd ' ') || continue
    [[ $addr == *' '* ]] || continue
    printf '%s\n' "$addr"
    return 0
  done
  return 1
}

# Healthy: every live sentinel names the same master, that master answers as a master, and the
# sentinels can reach quorum and authorize a failover. With `full`, also: all five processes up,
# the replica in sync, and each sentinel knows the two others (so a failover can happen at all).
sentinel_healthy() {
  local mode=$1 port addr="" a ck
  for port in "${SENTINEL_PORTS[@]}"; do
    if ! redis_pid "$port" >/dev/null; then
      [[ $mode != full ]] || return 1 # in full mode every sentinel must be up
      continue
    fi
    a=$(rcli "$port" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd ' ') || return 1
    [[ -z $addr || $a == "$addr" ]] || return 1
    addr=$a
  done
  [[ -n $addr ]] || return 1
  [[ $(redis_role "${addr#* }" 2>/dev/null) == master ]] || return 1
  ck=$(rcli "$(first_live_sentinel)" sentinel ckquorum "$MASTER_NAME" 2>/dev/null) || return 1
  [[ $ck == OK* ]] || return 1
  if [[ $mode == full ]]; then
    [[ $ck == "OK ${#SENTINEL_PORTS[@]} usable"* ]] || return 1
    for port in "${SENTINEL_REDIS_PORTS[@]}"; do
      [[ $port == "${addr#* }" ]] && continue
      [[ $(redis_role "$port" 2>/dev/null) == *"link up" ]] || return 1
    done
  fi
}

first_live_sentinel() {
  local port
  for port in "${SENTINEL_PORTS[@]}"; do
    if redis_pid "$port" >/dev/null; then
      printf '%s' "$port"
      return 0
    fi
  done
  return 1
}

sentinel_up() {
  local all=("${SENTINEL_REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}")
  case $(redis_count_alive "${all[@]}") in
    0) ;;
    "${#all[@]}")
      say "sentinel: already up, reusing it"
      wait_for "$WAIT_SECS" "the sentinel group" sentinel_healthy full || exit 1
      return 0
      ;;
    *) die "sentinel: only some processes are up; 'start redis PORT' them or 'down sentinel' first" ;;
  esac
  need_cmd redis-server redis-cli
  require_free_ports "${all[@]}"
  ensure_state_dir
  remove_dir "$STATE_DIR/sentinel"
  sentinel_write_confs
  say "sentinel: starting master ${SENTINEL_REDIS_PORTS[0]}, replica ${SENTINEL_REDIS_PORTS[1]}, sentinels ${SENTINEL_PORTS[*]}"
  local port
  for port in "${all[@]}"; do redis_start "$port"; done
  wait_for "$WAIT_SECS" "the sentinel group" sentinel_healthy full || exit 1
  say "sentinel: master $(sentinel_master_addr | tr ' ' ':'), $(rcli "${SENTINEL_PORTS[0]}" sentinel ckquorum "$MASTER_NAME")"
}

sentinel_down() {
  [[ -d $STATE_DIR/sentinel ]] || return 0
  local port
  # Sentinels first, so that stopping the master does not set off a failover.
  for port in "${SENTINEL_PORTS[@]}"; do redis_stop "$port" & done
  wait
  for port in "${SENTINEL_REDIS_PORTS[@]}"; do redis_stop "$port" & done
  wait
  remove_dir "$STATE_DIR/sentinel"
  say "sentinel: stopped"
}

sentinel_kill_master() {
  [[ -d $STATE_DIR/sentinel ]] || die "sentinel is not set up; run 'up sentinel' first"
  local addr port pid
  addr=$(sentinel_master_addr) || die "no sentinel answers"
  port=${addr#* }
  pid=$(redis_pid "$port") || die "the master the sentinels report ($addr) is not running"
  kill9_pid "$pid" "redis master on $port"
  say "sentinel: killed master 127.0.0.1:$port (pid $pid, kill -9); 'wait sentinel' returns once a replica took over"
}

sentinel_failover() {
  [[ -d $STATE_DIR/sentinel ]] || die "sentinel is not set up; run 'up sentinel' first"
  local before sentinel reply
  before=$(sentinel_master_addr) || die "no sentinel answers"
  sentinel=$(first_live_sentinel)
  reply=$(rcli "$sentinel" sentinel failover "$MASTER_NAME" 2>&1) || true
  [[ $reply == OK ]] || die "SENTINEL FAILOVER: $reply"
  # Forced failovers are asynchronous: wait for a new master, healthy, to be reported.
  wait_for "$WAIT_SECS" "the failover" sentinel_switched "$before" || exit 1
  say "sentinel: failover ${before/ /:} -> $(sentinel_master_addr | tr ' ' ':')"
}

# The sentinels report a new, healthy master, and the old one (if it still runs) replicates from it.
sentinel_switched() {
  local before=$1 now
  now=$(sentinel_master_addr) || return 1
  [[ $now != "$before" ]] || return 1
  sentinel_healthy any || return 1
  if redis_pid "${before#* }" >/dev/null; then redis_replica_linked "${before#* }" "${now#* }" || return 1; fi
}

# Restart a data node (it comes back as a replica: the sentinels convert it) or a sentinel.
sentinel_restart() {
  local port=$1
  check_port_of "$port" "${SENTINEL_REDIS_PORTS[@]}" "${SENTINEL_PORTS[@]}"
  [[ -d $STATE_DIR/sentinel/$port ]] || die "sentinel is not set up; run 'up sentinel' first"
  if redis_pid "$port" >/dev/null; then
    say "sentinel: $port is already running"
    return 0
  fi
  require_free_ports "$port"
  redis_start "$port"
  wait_for "$WAIT_SECS" "the sentinel group" sentinel_healthy any || exit 1
  if [[ " ${SENTINEL_REDIS_PORTS[*]} " == *" $port "* ]]; then
    local master
    master=$(sentinel_master_addr)
    if [[ ${master#* } != "$port" ]]; then
      wait_for "$WAIT_SECS" "$port to replicate from ${master/ /:}" redis_replica_linked "$port" "${master#* }" || exit 1
    fi
  fi
  if [[ " ${SENTINEL_PORTS[*]} " == *" $port "* ]]; then
    say "sentinel: sentinel $port is back: master $MASTER_NAME = $(rcli "$port" sentinel get-master-addr-by-name "$MASTER_NAME" | paste -sd ':')"
  else
    say "sentinel: $port is back: $(redis_role "$port")"
  fi
}

redis_replica_linked() { [[ $(redis_role "$1" 2>/dev/null) == "replica of 127.0.0.1:$2, link up" ]]; }

sentinel_status() {
  if [[ ! -d $STATE_DIR/sentinel ]]; then
    echo "sentinel: down (not set up)"
    return 0
  fi
  local port pid addr
  echo "sentinel:"
  for port in "${SENTINEL_REDIS_PORTS[@]}"; do
    if pid=$(redis_pid "$port"); then
      printf '  redis    127.0.0.1:%-5s up    pid %-8s %s\n' "$port" "$pid" "$(redis_role "$port" 2>/dev/null || echo '?')"
    else
      printf '  redis    127.0.0.1:%-5s down\n' "$port"
    fi
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    if pid=$(redis_pid "$port"); then
      addr=$(rcli "$port" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd ':') || addr='?'
      printf '  sentinel 127.0.0.1:%-5s up    pid %-8s master %s = %s\n' "$port" "$pid" "$MASTER_NAME" "$addr"
    else
      printf '  sentinel 127.0.0.1:%-5s down\n' "$port"
    fi
  done
  if port=$(first_live_sentinel); then
    echo "  quorum: $(rcli "$port" sentinel ckquorum "$MASTER_NAME" 2>&1)"
  fi
}

# ---------------------------------------------------------------------------------------------
# Redis Cluster: 7001-7006, three masters with one replica each.

cluster_write_conf() {
  local port=$1 d
  d="$STATE_DIR/cluster/$port"
  mkdir -p "$d"
  redis_write_conf "$port"
  # A short node timeout: a killed master is replaced within a few seconds.
  cat >>"$d/redis.conf" <<EOF
cluster-enabled yes
cluster-config-file "$d/nodes.conf"
cluster-node-timeout 2000
EOF
}

cluster_state_ok() { rcli "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

# `CLUSTER NODES` from the first live node.
cluster_nodes() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    redis_pid "$port" >/dev/null || continue
    rcli "$port" cluster nodes 2>/dev/null | tr -d '\r' && return 0
  done
  return 1
}

# "FIRST_SLOT SLOTS HOST:PORT ID" of each master serving slots (not failed), by first slot.
cluster_masters() {
  cluster_nodes | awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 {
      split($9, r, "-"); addr = $2; sub(/@.*/, "", addr); print r[1], $9, addr, $1 }' | sort -n
}

# Healthy: every live node says cluster_state:ok and every master serving slots answers (right
# after a kill the others still count the dead master in, until cluster-node-timeout). With
# `full`: all six nodes up, and every replica's link to its master up (a replica that never
# synced is not eligible for failover).
cluster_healthy() {
  local mode=$1 port addr
  for port in "${CLUSTER_PORTS[@]}"; do
    if redis_pid "$port" >/dev/null; then
      cluster_state_ok "$port" || return 1
      if [[ $mode == full && $(redis_role "$port" 2>/dev/null) == replica* ]]; then
        [[ $(redis_role "$port") == *"link up" ]] || return 1
      fi
    elif [[ $mode == full ]]; then
      return 1
    fi
  done
  local masters
  masters=$(cluster_masters) || return 1
  [[ $(wc -l <<<"$masters") -eq 3 ]] || return 1
  while read -r _ _ addr _; do
    redis_answers "${addr##*:}" || return 1
  done <<<"$masters"
}

cluster_up() {
  case $(redis_count_alive "${CLUSTER_PORTS[@]}") in
    0) ;;
    "${#CLUSTER_PORTS[@]}")
      say "cluster: already up, reusing it"
      wait_for "$WAIT_SECS" "the Redis Cluster" cluster_healthy full || exit 1
      return 0
      ;;
    *) die "cluster: only some nodes are up; 'start cluster-node PORT' them or 'down cluster' first" ;;
  esac
  need_cmd redis-server redis-cli
  local port ports=() addrs=()
  for port in "${CLUSTER_PORTS[@]}"; do
    ports+=("$port" $((port + 10000))) # each node also listens on its cluster bus port
    addrs+=("127.0.0.1:$port")
  done
  require_free_ports "${ports[@]}"
  ensure_state_dir
  remove_dir "$STATE_DIR/cluster"
  say "cluster: starting ${CLUSTER_PORTS[*]}"
  for port in "${CLUSTER_PORTS[@]}"; do cluster_write_conf "$port"; done
  for port in "${CLUSTER_PORTS[@]}"; do redis_start "$port"; done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$STATE_DIR/cluster/create.log" 2>&1 ||
    die "redis-cli --cluster create failed; see $STATE_DIR/cluster/create.log"
  wait_for "$WAIT_SECS" "cluster_state:ok on every node" cluster_healthy full || exit 1
  say "cluster: cluster_state:ok on ${#CLUSTER_PORTS[@]} nodes"
}

cluster_down() {
  [[ -d $STATE_DIR/cluster ]] || return 0
  local port
  for port in "${CLUSTER_PORTS[@]}"; do redis_stop "$port" & done
  wait
  remove_dir "$STATE_DIR/cluster"
  say "cluster: stopped"
}

# "SLOTS HOST:PORT ID" of the live master serving the Nth slot range (1..3).
cluster_master_of() {
  local n=$1 line
  [[ -d $STATE_DIR/cluster ]] || die "cluster is not set up; run 'up cluster' first"
  [[ $n =~ ^[1-3]$ ]] || die "N must be 1..3 (the Nth slot range: 0-5460, 5461-10922, 10923-16383)"
  line=$(cluster_masters | sed -n "${n}p")
  [[ -n $line ]] || die "cluster: no live master for slot range $n"
  cut -d' ' -f2- <<<"$line"
}

# The HOST:PORT of each replica of the master with node id $1, one per line.
cluster_replicas_of() {
  cluster_nodes | awk -v id="$1" '$4 == id && $3 !~ /fail/ { a = $2; sub(/@.*/, "", a); print a }'
}

cluster_kill_master() {
  local master slots addr id pid replicas
  master=$(cluster_master_of "${1:-}") || exit 1
  read -r slots addr id <<<"$master"
  pid=$(redis_pid "${addr##*:}") || die "cluster: master $addr is not one of ours"
  replicas=$(cluster_replicas_of "$id" | paste -sd ' ')
  kill9_pid "$pid" "cluster master $addr"
  say "cluster: killed master $addr (slots $slots, pid $pid, kill -9); its replica (${replicas:-none}) takes over after cluster-node-timeout; 'start cluster-node ${addr##*:}' brings it back as a replica"
}

# A handover, as managed services do for maintenance: the replica catches up with its master,
# then the two swap roles, and the old master stays up as a replica of the new one.
cluster_failover() {
  local master slots addr id replica reply
  master=$(cluster_master_of "${1:-}") || exit 1
  read -r slots addr id <<<"$master"
  replica=$(cluster_replicas_of "$id" | sed -n 1p)
  [[ -n $replica ]] || die "cluster: master $addr has no live replica"
  reply=$(rcli "${replica##*:}" cluster failover 2>&1) || true
  [[ $reply == OK ]] || die "cluster: CLUSTER FAILOVER on $replica: $reply"
  wait_for "$WAIT_SECS" "$replica to take over" cluster_is_master "${replica##*:}" || exit 1
  wait_for "$WAIT_SECS" "cluster_state:ok" cluster_healthy any || exit 1
  say "cluster: failover $addr -> $replica (slots $slots); $addr is its replica now"
}

cluster_is_master() { [[ $(redis_role "$1" 2>/dev/null) == master ]]; }

cluster_restart() {
  local port=$1
  check_port_of "$port" "${CLUSTER_PORTS[@]}"
  [[ -d $STATE_DIR/cluster/$port ]] || die "cluster is not set up; run 'up cluster' first"
  if redis_pid "$port" >/dev/null; then
    say "cluster: $port is already running"
    return 0
  fi
  require_free_ports "$port" $((port + 10000))
  # nodes.conf keeps its identity; it learns that it was failed over and becomes a replica.
  redis_start "$port"
  wait_for "$WAIT_SECS" "cluster_state:ok with $port back" cluster_port_back "$port" || exit 1
  say "cluster: $port is back: $(redis_role "$port")"
}

cluster_port_back() {
  cluster_healthy any || return 1
  [[ $(redis_role "$1" 2>/dev/null) != replica* || $(redis_role "$1") == *"link up" ]]
}

cluster_status() {
  if [[ ! -d $STATE_DIR/cluster ]]; then
    echo "cluster: down (not set up)"
    return 0
  fi
  local port pid state role slots nodes
  nodes=$(cluster_nodes) || nodes=""
  echo "cluster:"
  for port in "${CLUSTER_PORTS[@]}"; do
    if pid=$(redis_pid "$port"); then
      state=$(rcli "$port" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p')
      role=$(redis_role "$port" 2>/dev/null || echo '?')
      slots=$(awk -v a="127.0.0.1:$port" '{ b = $2; sub(/@.*/, "", b) } b == a && NF >= 9 { s = $9; for (i = 10; i <= NF; i++) s = s "," $i; print s }' <<<"$nodes")
      printf '  127.0.0.1:%-5s up    pid %-8s cluster_state:%-4s %s%s\n' "$port" "$pid" "${state:-?}" "$role" "${slots:+ (slots $slots)}"
    else
      printf '  127.0.0.1:%-5s down\n' "$port"
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# URLs

env_lines() {
  local n port list=()
  if [[ -d $STATE_DIR/rabbit ]]; then
    for n in "${RABBIT_NODES[@]}"; do list+=("amqp://guest:guest@127.0.0.1:$(rabbit_amqp_port "$n")/%2f"); done
    printf 'MENSAJERO_CLUSTER_AMQP_URLS=%s\n' "$(IFS=,; echo "${list[*]}")"
  fi
  if [[ -d $STATE_DIR/sentinel ]]; then
    list=()
    for port in "${SENTINEL_PORTS[@]}"; do list+=("redis://127.0.0.1:$port"); done
    printf 'MENSAJERO_SENTINEL_URLS=%s\n' "$(IFS=,; echo "${list[*]}")"
    printf 'MENSAJERO_SENTINEL_MASTER_NAME=%s\n' "$MASTER_NAME"
    list=()
    for port in "${SENTINEL_REDIS_PORTS[@]}"; do list+=("redis://127.0.0.1:$port"); done
    printf 'MENSAJERO_SENTINEL_REDIS_URLS=%s\n' "$(IFS=,; echo "${list[*]}")"
  fi
  if [[ -d $STATE_DIR/cluster ]]; then
    list=()
    for port in "${CLUSTER_PORTS[@]}"; do list+=("redis://127.0.0.1:$port"); done
    printf 'MENSAJERO_REDIS_CLUSTER_URLS=%s\n' "$(IFS=,; echo "${list[*]}")"
  fi
}

# $STATE_DIR/env: `export` lines, so that `. "$STATE_DIR/env"` hands them to the tests it runs.
write_env() {
  [[ -d $STATE_DIR ]] || return 0
  { echo "# Written by scripts/cluster.sh; source it: . $STATE_DIR/env"; env_lines | sed 's/^/export /'; } >"$STATE_DIR/env"
}

print_urls() {
  local n port
  if [[ -d $STATE_DIR/rabbit ]]; then
    echo "RabbitMQ cluster (guest/guest, loopback only):"
    for n in "${RABBIT_NODES[@]}"; do printf '  amqp://guest:guest@127.0.0.1:%s/%%2f   (%s)\n' "$(rabbit_amqp_port "$n")" "$(rabbit_node "$n")"; done
  fi
  if [[ -d $STATE_DIR/sentinel ]]; then
    echo "Redis Sentinel (master_name $MASTER_NAME; master now $(sentinel_master_addr | tr ' ' ':')):"
    for port in "${SENTINEL_PORTS[@]}"; do printf '  redis://127.0.0.1:%s\n' "$port"; done
  fi
  if [[ -d $STATE_DIR/cluster ]]; then
    echo "Redis Cluster:"
    for port in "${CLUSTER_PORTS[@]}"; do printf '  redis://127.0.0.1:%s\n' "$port"; done
  fi
  echo "Environment (also in $STATE_DIR/env):"
  env_lines | sed 's/^/  /'
}

# ---------------------------------------------------------------------------------------------

parts() {
  case ${1:-all} in
    all) echo rabbit sentinel cluster ;;
    rabbit | sentinel | cluster) echo "$1" ;;
    *) die "unknown part '$1' (rabbit, sentinel, cluster or all)" ;;
  esac
}

cmd_up() {
  local part i started=$SECONDS pids=() names=() failed=()
  need_cmd ss
  ensure_state_dir
  # The parts are independent and run side by side: RabbitMQ's boot is CPU-bound while the Redis
  # parts mostly wait (sentinel discovery, cluster join), so this saves their whole time.
  for part in $(parts "${1:-all}"); do
    "${part}_up" &
    pids+=("$!")
    names+=("$part")
  done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
  if ((${#failed[@]} > 0)); then
    drop_state_dir_if_empty
    die "up failed for: ${failed[*]} (what did start is kept for a look: 'status', 'down')"
  fi
  write_env
  print_urls
  say "up in $((SECONDS - started)) s"
}

cmd_down() {
  local part
  for part in $(parts "${1:-all}"); do "${part}_down"; done
  drop_state_dir_if_empty
}

# The whole state dir goes once no part is left in it; otherwise the env file follows what is left.
drop_state_dir_if_empty() {
  [[ -d $STATE_DIR ]] || return 0
  if [[ ! -d $STATE_DIR/rabbit && ! -d $STATE_DIR/sentinel && ! -d $STATE_DIR/cluster ]]; then
    remove_dir "$STATE_DIR"
    say "state dir $STATE_DIR removed"
  else
    write_env
  fi
}

cmd_wait() {
  local part
  for part in $(parts "${1:-all}"); do
    [[ -d $STATE_DIR/$part ]] || die "$part is not set up"
    case $part in
      rabbit) wait_for "$WAIT_SECS" "three running RabbitMQ nodes" rabbit_healthy ;;
      sentinel) wait_for "$WAIT_SECS" "the sentinel group" sentinel_healthy any ;;
      cluster) wait_for "$WAIT_SECS" "the Redis Cluster" cluster_healthy any ;;
    esac || exit 1
    say "$part: healthy"
  done
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status)
      rabbit_status
      sentinel_status
      cluster_status
      ;;
    env) env_lines ;;
    wait) cmd_wait "$@" ;;
    kill)
      case ${1:-} in
        rabbit) rabbit_kill "${2:-}" ;;
        redis-master) sentinel_kill_master ;;
        cluster-master) cluster_kill_master "${2:-}" ;;
        *) die "kill what? rabbit N | redis-master | cluster-master N" ;;
      esac
      ;;
    stop)
      case ${1:-} in
        rabbit) rabbit_stop "${2:-}" ;;
        *) die "stop what? rabbit N" ;;
      esac
      ;;
    start)
      case ${1:-} in
        rabbit) rabbit_restart "${2:-}" ;;
        redis) sentinel_restart "${2:-}" ;;
        cluster-node) cluster_restart "${2:-}" ;;
        *) die "start what? rabbit N | redis PORT | cluster-node PORT" ;;
      esac
      ;;
    failover)
      case ${1:-sentinel} in
        sentinel) sentinel_failover ;;
        cluster) cluster_failover "${2:-}" ;;
        *) die "failover what? [sentinel] | cluster N" ;;
      esac
      ;;
    rabbitmqctl)
      check_rabbit_n "${1:-}"
      rabbitmqctl_n "$@"
      ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"

#!/usr/bin/env bash
# Side-by-side benchmark: snigate, HAProxy (mode tcp, req.ssl_sni, splice), nginx (stream +
# ssl_preread + map), sniproxy, and direct loopback, driven by the same load generator
# (load-tests/loadgen) in one run. Each gateway gets one worker thread on CPU 0 and the same
# 12 routes (a bootstrap, brokers b0-b8, REST, Schema Registry); the load generator and the
# upstream servers share CPU 1. Everything runs in a network namespace of its own, with a
# wide port range and TIME_WAIT reuse, so tens of thousands of connections fit.
#
# Workloads, each run: the closed-loop connection rate (twice), the same with 2 gateway
# threads, an open loop at 25%, 50% and 75% of the best peer's closed-loop rate in that run
# (Poisson arrivals; latency from each connection's scheduled start; the gateway's own user
# and system CPU per connection), bulk throughput, and memory per idle connection. Then,
# once: where the time goes per connection for snigate and the cheapest peer (strace -c,
# callgrind), a perf profile of snigate, and the route lookup. The report ends with the
# targets, each a median of the ratios taken within each run.
#
#   bash load-tests/bench.sh [--quick] [--runs N] [--results DIR] [--pools | --egress | --scale]
#
# --pools measures what server pools cost instead: snigate's connection rate and p99
# with every route a pool of three servers against every route one upstream, alternated
# within each run; and the worker's idle CPU while it health-checks 1,000 servers every 2 s.
#
# --egress measures what a forward proxy costs: snigate's added connect latency and its own
# CPU per connection with every route going through squid (HTTP CONNECT with basic auth) or
# microsocks (SOCKS5 with a username and password), against the same routes direct, at one
# fixed open-loop rate, alternated within each run. The proxies run on CPU 1 with the load
# side, so the gateway's CPU figures are its own.
#
# --scale measures routes at scale: for 10, 1,000, 10,000 and 100,000 static routes (named as
# brokers of clusters of 30), snigate's `-t` time, time to /ready, worker RSS, /metrics size
# and scrape time, lookup rate (the closed loop over 200 of the names), the time a SIGHUP
# reload that changes 1% of the routes takes, and the open-loop p99 with reloads going on
# against the p99 without; beside it HAProxy at the same counts, as the recipe writes it (one
# ACL and one backend per route) and with a map file (one backend per upstream).
#
# --quick is the CI smoke: a second or two per workload and small connection counts; its
# numbers mean nothing. Without it, every workload runs --runs times (default 3) and the
# table gives medians. Needs root (network namespaces); installs haproxy, nginx,
# libnginx-mod-stream and sniproxy from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

orig_args=("$@")
quick=false
runs=3
results_dir="$root/load-tests/results"
inside=false
pools=false
egress=false
scale=false
while (($#)); do
  case "$1" in
    --quick) quick=true ;;
    --runs) runs=$2; shift ;;
    --results) results_dir=$2; shift ;;
    --inside) inside=true ;;
    --pools) pools=true ;;
    --egress) egress=true ;;
    --scale) scale=true ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if ! $inside; then
  if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E bash "$0" "${orig_args[@]}"
  fi
  missing=()
  for p in haproxy nginx libnginx-mod-stream sniproxy squid microsocks openssl iproute2 util-linux procps curl strace valgrind; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]}"
    # Keep the packages' own services from starting.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  echo "bench: building snigate and the load generator"
  cargo build --release --locked -p snigate -p snigate-loadgen --bins 2>&1 | tail -1
  ns="snibench$$"
  ip netns add "$ns"
  cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
  trap 'cleanup; rm -f /usr/sbin/policy-rc.d' EXIT
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535" \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
  args=(--runs "$runs" --results "$results_dir")
  $quick && args+=(--quick)
  $pools && args+=(--pools)
  $egress && args+=(--egress)
  $scale && args+=(--scale)
  ip netns exec "$ns" bash "$0" --inside "${args[@]}"
  exit $?
fi

# ---- inside the namespace -------------------------------------------------------------
# Raise the descriptor limit as far as this machine lets us: each relayed connection costs
# a gateway two descriptors. Where the hard limit cannot be raised (no CAP_SYS_RESOURCE),
# the largest idle test is capped to fit, and the table says so.
ulimit -Hn 1048576 2>/dev/null || true
fd_limit=$(ulimit -Hn)
ulimit -n "$fd_limit"
max_conns=$(( (fd_limit - 5000) / 2 ))
bin="$root/target/release"
loadgen="$bin/loadgen"
work=$(mktemp -d /tmp/snibench.XXXXXX)
failures=0
failed() { echo "bench: $1 failed" >&2; failures=$((failures + 1)); }
pids_started=()
stop_all() { for p in "${pids_started[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids_started=(); }
trap 'stop_all; rm -rf "$work"' EXIT

names=(pkc-bench01.eu-west-2.aws.confluent.test)
for i in 0 1 2 3 4 5 6 7 8; do names+=("b$i-pkc-bench01.eu-west-2.aws.confluent.test"); done
names+=(pkac-bench01.eu-west-2.aws.confluent.test psrc-bench01.eu-west-2.aws.confluent.test)
mapfile -t names < <(printf '%s\n' "${names[@]}" | sort)
upstreams=()
for i in "${!names[@]}"; do upstreams+=("127.0.20.$((i + 1)):9100"); done
gw=127.0.0.2:9092

if $quick; then
  secs=1.5; warm=0.5; bulk_secs=1; idle_small=500; idle_large=2000; runs=1; rate_rounds=1; open_secs=1
else
  secs=4; warm=1; bulk_secs=3; idle_small=5000; idle_large=50000; rate_rounds=2; open_secs=4
fi
# Open-loop loads, as percentages of the best peer's closed-loop rate in the same run.
open_loads=(25 50 75)
if ((idle_large > max_conns - 100)); then
  idle_large=$((max_conns - 100))
  echo "bench: the descriptor limit is $fd_limit; the large idle test holds $idle_large connections, not 50,000"
fi

"$loadgen" hellos --names "$(IFS=,; echo "${names[*]}")" --out "$work/hellos"
taskset -c 1 "$loadgen" upstreams --listen "$(IFS=,; echo "${upstreams[*]}")" > "$work/upstreams.log" 2>&1 &
pids_started+=($!)
wait_port() {
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on $1" >&2; return 1
}
wait_port "${upstreams[0]}"

regex() { printf '^%s$' "${1//./\\.}"; }
# snigate_head THREADS: the top of every snigate config the runner writes, up to the admin
# endpoint; the caller adds limits and routes.
# results_file [KIND]: sets $stamp (UTC time, then -KIND and -quick as they apply) and $file,
# the results file of that name, in a results directory made if missing.
results_file() {
  mkdir -p "$results_dir"
  stamp=$(date -u +%Y-%m-%dT%H%MZ)${1:+-$1}; $quick && stamp="$stamp-quick"
  file="$results_dir/$stamp.md"
}
snigate_head() {
  echo "threads: $1"; echo "pid_file: $work/snigate.pid"; echo "upgrade_sock: $work/snigate-upgrade.sock"
  echo "grace_period_seconds: 1"; echo "gateway:"; echo "  listeners:"; echo "    - name: kafka"
  echo "      address: $gw"; echo "  admin:"; echo "    address: 127.0.0.2:9080"
}
# write_configs [THREADS]: every gateway's config, with THREADS worker threads (default 1).
write_configs() {
  local threads=${1:-1}
  { snigate_head "$threads"
    echo "  max_connections: $max_conns"; echo "  idle_timeout_secs: 3600"; echo "  routes:"
    for i in "${!names[@]}"; do echo "    - sni: ${names[$i]}"; echo "      upstream: ${upstreams[$i]}"; done
  } > "$work/snigate.yaml"
  { echo "global"; echo "  nbthread $threads"; echo "  maxconn $max_conns"
    echo "defaults"; echo "  mode tcp"; echo "  timeout connect 5s"; echo "  timeout client 1h"
    echo "  timeout server 1h"; echo "  option splice-auto"
    echo "frontend gateway"; echo "  bind $gw"; echo "  maxconn $max_conns"; echo "  tcp-request inspect-delay 5s"
    echo "  tcp-request content accept if { req.ssl_hello_type 1 }"
    for i in "${!names[@]}"; do echo "  use_backend be$i if { req.ssl_sni -i ${names[$i]} }"; done
    for i in "${!names[@]}"; do echo "backend be$i"; echo "  server s ${upstreams[$i]}"; done
  } > "$work/haproxy.cfg"
  { echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"; echo "worker_processes $threads;"
    echo "worker_rlimit_nofile $fd_limit;"; echo "pid $work/nginx.pid;"; echo "error_log $work/nginx-error.log warn;"
    # nginx counts the client and the upstream side of each relayed connection.
    echo "daemon off;"; echo "events { worker_connections $((2 * max_conns)); }"
    echo "stream {"; echo "  map \$ssl_preread_server_name \$up {"
    for i in "${!names[@]}"; do echo "    ${names[$i]} ${upstreams[$i]};"; done
    echo "    default 127.0.0.1:1;"; echo "  }"
    echo "  server { listen $gw backlog=65535; ssl_preread on; proxy_half_close on; proxy_pass \$up; }"; echo "}"
  } > "$work/nginx.conf"
  { echo "user root"; echo "pidfile $work/sniproxy.pid"
    echo "error_log {"; echo "  filename $work/sniproxy-error.log"; echo "  priority warning"; echo "}"
    echo "listener $gw {"; echo "  protocol tls"; echo "  table bench"; echo "}"
    echo "table bench {"
    for i in "${!names[@]}"; do echo "  $(regex "${names[$i]}") ${upstreams[$i]}"; done
    echo "}"
  } > "$work/sniproxy.conf"
}
write_configs

gateway_pids=()
start_gateway() {
  gateway_pids=()
  case "$1" in
    snigate)
      RUST_LOG=warn taskset -c 0 "$bin/snigate" -c "$work/snigate.yaml" > "$work/snigate.log" 2>&1 &
      pids_started+=($!)
      # The stable process holds the port from the start: wait until its worker serves.
      for _ in $(seq 1 400); do
        curl -sf -o /dev/null "http://127.0.0.2:9080/ready" && break
        sleep 0.05
      done
      gateway_pids=($(pgrep -f -- "--worker -u -c $work/snigate.yaml") $!) ;;
    haproxy)
      taskset -c 0 haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
      pids_started+=($!); wait_port "$gw"; gateway_pids=($!) ;;
    nginx)
      taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
      pids_started+=($!); wait_port "$gw"; gateway_pids=($!)
      gateway_pids+=($(pgrep -P "$!")) ;;
    sniproxy)
      taskset -c 0 sniproxy -f -c "$work/sniproxy.conf" > "$work/sniproxy.log" 2>&1 &
      pids_started+=($!); wait_port "$gw"; gateway_pids=($!) ;;
    direct) ;;
  esac
}
stop_gateway() {
  for p in "${gateway_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${gateway_pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  # Wait for the listening port to be free again.
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${gw%:*}/${gw#*:}") 2>/dev/null || break; sleep 0.05; done
}

raw="$work/results.tsv"
: > "$raw"
gateways=(snigate haproxy nginx sniproxy direct)
targets_of() { if [ "$1" = direct ]; then (IFS=,; echo "${upstreams[*]}"); else echo "$gw"; fi; }
pid_args_now() { pid_args=(); for p in "${gateway_pids[@]}"; do pid_args+=(--pid "$p"); done; }
# The best peer's closed-loop rate in run $1: each peer's mean over its rounds, the highest.
best_peer_rate() {
  awk -F'\t' -v r="$1" '$4 == r && $2 == "conns_per_s" && ($1 == "haproxy" || $1 == "nginx" || $1 == "sniproxy") {
      s[$1] += $3; n[$1]++ }
    END { m = 0; for (g in s) if (s[g] / n[g] > m) m = s[g] / n[g]; printf "%d\n", m }' "$raw"
}
# The middle of the numbers on stdin (the mean of the two middle ones for an even count).
mid() { sort -g | awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit }
    x = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.6g\n", x }'; }
# The median over the runs of config/gateway $1's metric $2, for --pools and --egress.
median() { awk -F'\t' -v g="$1" -v m="$2" '$1 == g && $2 == m { print $3 }' "$raw" | mid; }
# ---- --pools: what server pools cost ------------------------------------------------------
if $pools; then
  # Every route a pool of three upstreams (its own and the next two), round robin, with the
  # default tcp check every 2 s; against the usual config, every route one upstream.
  write_pool_config() {
    { snigate_head 1
      echo "  max_connections: $max_conns"; echo "  idle_timeout_secs: 3600"; echo "  routes:"
      local n=${#names[@]}
      for i in "${!names[@]}"; do
        echo "    - sni: ${names[$i]}"; echo "      servers:"
        for k in 0 1 2; do echo "        - address: ${upstreams[$(( (i + k) % n ))]}"; done
      done
    } > "$work/snigate.yaml"
  }
  # The 1,000 servers of the idle check test: real listeners (on CPU 1), so that every check
  # is a full TCP connect. Bound first, while no client socket holds their ports.
  check_addrs=()
  for h in $(seq 1 250); do for port in 9201 9202 9203 9204; do check_addrs+=("127.0.30.$h:$port"); done; done
  taskset -c 1 "$loadgen" upstreams --listen "$(IFS=,; echo "${check_addrs[*]}")" > "$work/checked.log" 2>&1 &
  pids_started+=($!)
  wait_port "${check_addrs[-1]}" || { cat "$work/checked.log" >&2; exit 1; }
  for run in $(seq 1 "$runs"); do
    order=(single pool); ((run % 2 == 0)) && order=(pool single)
    for round in $(seq 1 "$rate_rounds"); do
      for mode in "${order[@]}"; do
        if [ "$mode" = pool ]; then write_pool_config; else write_configs 1; fi
        echo "bench: run $run/$runs, connection rate ($round/$rate_rounds): snigate, $mode"
        start_gateway snigate; pid_args_now
        taskset -c 1 "$loadgen" rate --targets "$gw" --hellos "$work/hellos" --concurrency 32 \
          --warmup-secs "$warm" --seconds "$secs" "${pid_args[@]}" --label "$mode" --out "$raw" --run "$run" > /dev/null \
          || failed "snigate $mode: the rate workload"
        stop_gateway
      done
    done
  done
  # Idle CPU while checking 1,000 servers every 2 s (below).
  { snigate_head 1; echo "  routes:"
    for h in $(seq 1 250); do
      echo "    - sni: pool-$h.bench.test"; echo "      servers:"
      for port in 9201 9202 9203 9204; do echo "        - address: 127.0.30.$h:$port"; done
    done
  } > "$work/snigate.yaml"
  idle_secs=20; $quick && idle_secs=4
  checks_done() { curl -s http://127.0.0.2:9080/metrics | awk '/^snigate_health_check_seconds_count/ { s += $NF } END { printf "%d\n", s }'; }
  cpu_ticks() { local t=0; for p in "$@"; do t=$(( t + $(awk '{ print $14 + $15 }' "/proc/$p/stat") )); done; echo "$t"; }
  for run in $(seq 1 "$runs"); do
    echo "bench: run $run/$runs, idle CPU checking 1,000 servers every 2 s"
    start_gateway snigate
    sleep 3   # past start-up and the first pass
    c0=$(checks_done); t0=$(cpu_ticks "${gateway_pids[@]}")
    sleep "$idle_secs"
    c1=$(checks_done); t1=$(cpu_ticks "${gateway_pids[@]}")
    hz=$(getconf CLK_TCK)
    awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$idle_secs" -v c=$((c1 - c0)) -v r="$run" 'BEGIN {
        us = t / hz * 1e6
        printf "checks\tcpu_percent\t%.3f\t%d\n", 100 * us / (s * 1e6), r
        printf "checks\tchecks_per_s\t%.1f\t%d\n", c / s, r
        if (c > 0) printf "checks\tcpu_us_per_check\t%.2f\t%d\n", us / c, r
      }' >> "$raw"
    stop_gateway
  done
  # The pool's figure over the single upstream's, as the median of the per-run ratios.
  ratio() { awk -F'\t' -v m="$1" '$2 == m { s[$1 " " $4] += $3; n[$1 " " $4]++ }
      END { for (k in s) { split(k, a, " "); o = "single " a[2]
              if (a[1] == "pool" && n[o]) print (s[k] / n[k]) / (s[o] / n[o]) } }' "$raw" | mid; }
  # Every per-run ratio, in order, for the spread.
  ratios() { awk -F'\t' -v m="$1" '$2 == m { s[$1 " " $4] += $3; n[$1 " " $4]++ }
      END { for (k in s) { split(k, a, " "); o = "single " a[2]
              if (a[1] == "pool" && n[o]) printf "%.3f\n", (s[k] / n[k]) / (s[o] / n[o]) } }' "$raw" | sort -g | paste -sd' '; }
  rate_ratio=$(ratio conns_per_s); p99_ratio=$(ratio p99_us); cpu_ratio=$(ratio cpu_us_per_conn)
  holds=no; awk -v r="$rate_ratio" 'BEGIN { exit !(r != "-" && r >= 0.95) }' && holds=yes
  results_file pools
  {
    echo "# What server pools cost, $stamp"
    echo
    echo "\`bash load-tests/bench.sh --pools$($quick && echo " --quick") --runs $runs\`. snigate, one worker thread on CPU 0; load"
    echo "generator and upstreams on CPU 1. Connection rate: 32 concurrent clients, real ClientHellos for"
    echo "the 12 routes, ${secs}s after ${warm}s of warm-up, $rate_rounds round(s) a run, the two configs alternated:"
    echo "*single*, each route one upstream; *pool*, each route a pool of three (round robin, tcp check"
    echo "every 2 s). Idle: 250 routes of 4 servers, 1,000 real listeners, the default tcp check every"
    echo "2 s; the worker's own CPU over ${idle_secs}s, no client connections."
    echo
    echo "| config | conns/s | p99 µs | CPU µs/conn |"
    echo "|---|---|---|---|"
    for m in single pool; do
      echo "| $m | $(median "$m" conns_per_s) | $(median "$m" p99_us) | $(median "$m" cpu_us_per_conn) |"
    done
    echo "| **pool ÷ single** (median of per-run ratios) | $rate_ratio | $p99_ratio | $cpu_ratio |"
    echo
    echo "Per-run ratios of the rate: $(ratios conns_per_s). The closed-loop rate is capped by the load"
    echo "side and moves by ±10% between rounds; CPU per connection is the steadier measure of cost."
    echo
    echo "A pool must cost no more than 5% of the rate (ratio ≥ 0.95): **$holds**."
    echo
    echo "| idle, checking 1,000 servers every 2 s | median |"
    echo "|---|---|"
    echo "| worker CPU, % of one core | $(median checks cpu_percent) |"
    echo "| checks per second | $(median checks checks_per_s) |"
    echo "| CPU µs per check | $(median checks cpu_us_per_check) |"
    echo
    echo "## Raw results (config, metric, value, run)"
    echo
    echo '```'; cat "$raw"; echo '```'
  } > "$file"
  cat "$file"
  echo "bench: results written to ${file#"$root"/}"
  ((failures)) && exit 1
  exit 0
fi

# ---- --scale: routes at scale --------------------------------------------------------------
if $scale; then
  counts=(10 1000 10000 100000); $quick && counts=(10 1000)
  scale_rate=2000; $quick && scale_rate=300
  ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
  # scale_names N: route i is broker b(i mod 30) of cluster c(i / 30).
  scale_names() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "b%d-pkc-c%d.eu-west-2.aws.confluent.test\n", i % 30, int(i / 30) }'; }
  # scale_config N SHIFT: snigate's config; every 100th route's upstream moved by SHIFT.
  scale_config() {
    { snigate_head 1
      echo "  max_connections: $max_conns"; echo "  routes:"
      scale_names "$1" | awk -v shift="$2" -v ups="$(IFS=,; echo "${upstreams[*]}")" '
        BEGIN { n = split(ups, u, ",") }
        { i = NR - 1; k = i % n; if (i % 100 == 0) k = (k + shift) % n
          printf "    - sni: %s\n      upstream: %s\n", $0, u[k + 1] }'
    } > "$work/snigate-$2.yaml"
  }
  scale_haproxy() {
    { echo "global"; echo "  nbthread 1"; echo "  maxconn $max_conns"
      echo "defaults"; echo "  mode tcp"; echo "  timeout connect 5s"; echo "  timeout client 1h"
      echo "  timeout server 1h"; echo "  option splice-auto"
      echo "frontend gateway"; echo "  bind $gw"; echo "  maxconn $max_conns"; echo "  tcp-request inspect-delay 5s"
      echo "  tcp-request content accept if { req.ssl_hello_type 1 }"
      if [ "$2" = map ]; then
        echo "  use_backend %[req.ssl_sni,lower,map($work/sni.map,none)]"
        for k in "${!upstreams[@]}"; do echo "backend u$k"; echo "  server s ${upstreams[$k]}"; done
      else
        scale_names "$1" | awk '{ printf "  use_backend be%d if { req.ssl_sni -i %s }\n", NR - 1, $0 }'
        scale_names "$1" | awk -v ups="$(IFS=,; echo "${upstreams[*]}")" '
          BEGIN { n = split(ups, u, ",") } { printf "backend be%d\n  server s %s\n", NR - 1, u[(NR - 1) % n + 1] }'
      fi
    } > "$work/haproxy.cfg"
    scale_names "$1" | awk -v n="${#upstreams[@]}" '{ printf "%s u%d\n", $0, (NR - 1) % n }' > "$work/sni.map"
  }
  rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
  # settled_rss_kib PID: the worker's lowest RSS once 3 s have passed since the reload
  # counter last moved and the RSS has not fallen for a second (15 s at most): a worker
  # gives a reload's memory back 2 s after its last reload (of 1,000 routes or more).
  # Fails if the worker is gone.
  settled_rss_kib() {
    local t0 low now fell moved last count
    t0=$(ms_now); fell=$t0; moved=$t0; last=$(reloads_ok)
    low=$(rss_kib "$1" 2> /dev/null); [[ $low =~ ^[0-9]+$ ]] || return 1
    while (( $(ms_now) - t0 < 15000 )); do
      sleep 0.1
      now=$(rss_kib "$1" 2> /dev/null); [[ $now =~ ^[0-9]+$ ]] || return 1
      count=$(reloads_ok); [ "$count" != "$last" ] && { last=$count; moved=$(ms_now); }
      (( now < low )) && { low=$now; fell=$(ms_now); }
      (( $(ms_now) - moved >= 3000 && $(ms_now) - fell >= 1000 )) && break
    done
    echo "$low"
  }
  # record_kib NAME KIB WHAT: a raw line for NAME at this size and run, if KIB is a number;
  # otherwise the run fails, saying WHAT is missing.
  record_kib() {
    if [[ $2 =~ ^[0-9]+$ ]]; then
      echo -e "snigate\tn${n}_$1\t$2\t$run" >> "$raw"
    else
      failed "snigate: no worker RSS $3 with $n routes"
    fi
  }
  # Polled from CPU 1 every 5 ms: a tighter loop would take the gateway's core from the reload.
  reloads_ok() { taskset -c 1 curl -s http://127.0.0.2:9080/metrics | awk '/^snigate_config_reloads_total\{.*outcome="ok"/ { print $NF }'; }
  for run in $(seq 1 "$runs"); do
    for n in "${counts[@]}"; do
      # 200 of the names, spread over the table, for the lookup rate.
      rm -rf "$work/scale-hellos"
      sample=$(scale_names "$n" | awk -v n="$n" 'BEGIN { s = n < 200 ? 1 : int(n / 200) } (NR - 1) % s == 0' | head -200 | paste -sd,)
      "$loadgen" hellos --names "$sample" --out "$work/scale-hellos"
      scale_config "$n" 0; scale_config "$n" 1
      cp "$work/snigate-0.yaml" "$work/snigate.yaml"
      echo "bench: run $run/$runs, $n routes: snigate"
      t0=$(ms_now); "$bin/snigate" -t -c "$work/snigate.yaml" > /dev/null; t1=$(ms_now)
      echo -e "snigate\tn${n}_check_ms\t$((t1 - t0))\t$run" >> "$raw"
      t0=$(ms_now)
      RUST_LOG=warn taskset -c 0 "$bin/snigate" -c "$work/snigate.yaml" > "$work/snigate.log" 2>&1 &
      stable=$!; pids_started+=("$stable")
      until curl -sf -o /dev/null http://127.0.0.2:9080/ready; do
        (( $(ms_now) - t0 < 120000 )) || { failed "snigate: not ready with $n routes"; break; }
        sleep 0.005
      done
      t1=$(ms_now)
      worker=$(pgrep -f -- "--worker -u -c $work/snigate.yaml" | head -1)
      gateway_pids=("$worker" "$stable")
      echo -e "snigate\tn${n}_ready_ms\t$((t1 - t0))\t$run" >> "$raw"
      echo -e "snigate\tn${n}_rss_kib\t$(rss_kib "$worker")\t$run" >> "$raw"
      read -r size scrape_s < <(curl -s -o /dev/null -w '%{size_download} %{time_total}\n' http://127.0.0.2:9080/metrics)
      echo -e "snigate\tn${n}_metrics_bytes\t$size\t$run" >> "$raw"
      echo -e "snigate\tn${n}_metrics_ms\t$(awk -v s="$scrape_s" 'BEGIN { printf "%.1f", s * 1000 }')\t$run" >> "$raw"
      pid_args_now
      taskset -c 1 "$loadgen" rate --targets "$gw" --hellos "$work/scale-hellos" --concurrency 32 \
        --warmup-secs "$warm" --seconds "$secs" "${pid_args[@]}" --prefix "n${n}_" --label snigate --out "$raw" \
        --run "$run" > /dev/null || failed "snigate: the lookup rate with $n routes"
      # One reload that moves 1% of the routes, timed from SIGHUP to the counter.
      before=$(reloads_ok); cp "$work/snigate-1.yaml" "$work/snigate.yaml"
      t0=$(ms_now); kill -HUP "$stable"
      until [ "$(reloads_ok)" != "$before" ]; do
        (( $(ms_now) - t0 < 60000 )) || { failed "snigate: no reload with $n routes"; break; }
        sleep 0.005
      done
      t1=$(ms_now)
      echo -e "snigate\tn${n}_reload_ms\t$((t1 - t0))\t$run" >> "$raw"
      grep -q "reload failed" "$work/snigate.log" && failed "snigate: a reload with $n routes failed"
      # The open loop without, then with, a reload every half second (each moving 1%).
      taskset -c 1 "$loadgen" open --targets "$gw" --hellos "$work/scale-hellos" --rate "$scale_rate" \
        --prefix "n${n}_steady" --warmup-secs "$warm" --seconds "$open_secs" --label snigate --out "$raw" \
        --run "$run" > /dev/null 2>> "$work/open.log" || failed "snigate: the open loop with $n routes"
      # RSS before and after the reloads, with every route that carried traffic above
      # already holding its series.
      record_kib rss_loaded_kib "$(rss_kib "$worker" 2> /dev/null)" "before the reloads"
      # The load generator itself swaps the file (a hard link renamed over it) and sends the
      # SIGHUP: a shell loop forked processes on the load side's core at every reload.
      taskset -c 1 "$loadgen" open --targets "$gw" --hellos "$work/scale-hellos" --rate "$scale_rate" \
        --prefix "n${n}_reloading" --warmup-secs "$warm" --seconds "$open_secs" --label snigate --out "$raw" \
        --hup-pid "$stable" --hup-config "$work/snigate.yaml" --hup-every-ms 500 \
        --hup-alternates "$work/snigate-0.yaml,$work/snigate-1.yaml" \
        --run "$run" > /dev/null 2>> "$work/open.log" || failed "snigate: the open loop during reloads with $n routes"
      record_kib rss_reloaded_kib "$(settled_rss_kib "$worker")" "after the reloads"
      # Stopped first, so that no reload still queued reads the file after it is gone and
      # every reload's outcome is in the log; the config is now a hard link to an
      # alternate, unlinked before it is written again.
      stop_gateway
      grep -q "reload failed" "$work/snigate.log" && failed "snigate: a reload with $n routes failed"
      rm -f "$work/snigate.yaml"
      for layout in backends map; do
        echo "bench: run $run/$runs, $n routes: haproxy ($layout)"
        scale_haproxy "$n" "$layout"
        t0=$(ms_now); haproxy -c -q -f "$work/haproxy.cfg" > /dev/null 2>&1 || failed "haproxy $layout: -c with $n routes"; t1=$(ms_now)
        echo -e "haproxy_$layout\tn${n}_check_ms\t$((t1 - t0))\t$run" >> "$raw"
        t0=$(ms_now)
        taskset -c 0 haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
        pids_started+=($!); gateway_pids=($!)
        until (exec 3<>"/dev/tcp/${gw%:*}/${gw#*:}") 2>/dev/null; do
          (( $(ms_now) - t0 < 300000 )) || { failed "haproxy $layout: not listening with $n routes"; break; }
          sleep 0.005
        done
        t1=$(ms_now)
        echo -e "haproxy_$layout\tn${n}_ready_ms\t$((t1 - t0))\t$run" >> "$raw"
        echo -e "haproxy_$layout\tn${n}_rss_kib\t$(rss_kib "${gateway_pids[0]}")\t$run" >> "$raw"
        pid_args_now
        taskset -c 1 "$loadgen" rate --targets "$gw" --hellos "$work/scale-hellos" --concurrency 32 \
          --warmup-secs "$warm" --seconds "$secs" "${pid_args[@]}" --prefix "n${n}_" --label "haproxy_$layout" \
          --out "$raw" --run "$run" > /dev/null || failed "haproxy $layout: the lookup rate with $n routes"
        stop_gateway
      done
    done
  done
  col() { median "$1" "n${2}_$3"; }
  # KiB of RSS per route beyond the 10-route config's, for N routes: kib_per_route RSS BASE N.
  kib_per_route() { awk -v r="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 10 && r != "-" && b != "-") printf "%.2f", (r - b) / (n - 10); else print "—" }'; }
  # MiB pair A / B from two KiB medians, or - if either is missing: mib_pair A B.
  mib_pair() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.1f / %.1f", a / 1024, b / 1024 }'; }
  results_file scale
  {
    echo "# Routes at scale, $stamp"
    echo
    echo "\`bash load-tests/bench.sh --scale$($quick && echo " --quick") --runs $runs\`. One worker thread on CPU 0; load"
    echo "generator and the 12 upstreams on CPU 1. Route i is \`b(i mod 30)-pkc-c(i / 30).eu-west-2.aws.confluent.test\`,"
    echo "static, to one of the 12 upstreams. Lookups: the closed loop (32 clients, ${secs}s) over 200 names spread"
    echo "over the table. Reload: SIGHUP with 1% of the upstreams changed, timed to the reload counter (the"
    echo "scrape polls, every 5 ms from CPU 1, add up to 5 ms). During the reloading open loop the load generator itself swaps the file (a hard link renamed over it) and sends each SIGHUP. p99: open loop at $scale_rate/s for ${open_secs}s, without and with a reload"
    echo "every 0.5 s. RSS before the reloads: after the lookups, the timed reload and the steady loop, once every route that carried traffic has its series; after: once the worker has given the reloads' memory back. Medians over $runs run(s)."
    echo
    echo "| routes | \`-t\` ms | to /ready ms | worker RSS MiB | KiB/route over 10 routes | RSS MiB before / after the reloads | /metrics bytes | scrape ms | lookups conns/s | reload ms | p99 µs steady | p99 µs reloading | reloading ÷ steady |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    base=$(col snigate 10 rss_kib)
    for n in "${counts[@]}"; do
      rss=$(col snigate "$n" rss_kib); steady=$(col snigate "$n" steady_p99_us); during=$(col snigate "$n" reloading_p99_us)
      per=$(kib_per_route "$rss" "$base" "$n")
      echo "| $n | $(col snigate "$n" check_ms) | $(col snigate "$n" ready_ms) | $(awk -v r="$rss" 'BEGIN { printf "%.1f", r / 1024 }') | $per | $(mib_pair "$(col snigate "$n" rss_loaded_kib)" "$(col snigate "$n" rss_reloaded_kib)") | $(col snigate "$n" metrics_bytes) | $(col snigate "$n" metrics_ms) | $(col snigate "$n" conns_per_s) | $(col snigate "$n" reload_ms) | $steady | $during | $(awk -v a="$during" -v b="$steady" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }') |"
    done
    echo
    echo "HAProxy at the same counts (\`-c\` is its config check; ready is until its port accepts):"
    echo
    echo "| routes | layout | \`-c\` ms | to ready ms | RSS MiB | KiB/route over 10 routes | lookups conns/s |"
    echo "|---|---|---|---|---|---|---|"
    for layout in backends map; do
      base=$(col "haproxy_$layout" 10 rss_kib)
      for n in "${counts[@]}"; do
        rss=$(col "haproxy_$layout" "$n" rss_kib)
        per=$(kib_per_route "$rss" "$base" "$n")
        echo "| $n | $layout | $(col "haproxy_$layout" "$n" check_ms) | $(col "haproxy_$layout" "$n" ready_ms) | $(awk -v r="$rss" 'BEGIN { printf "%.1f", r / 1024 }') | $per | $(col "haproxy_$layout" "$n" conns_per_s) |"
      done
    done
    echo
    echo "## Raw results (gateway, metric, value, run)"
    echo
    echo '```'; cat "$raw"; echo '```'
  } > "$file"
  cat "$file"
  echo "bench: results written to ${file#"$root"/}"
  ((failures)) && exit 1
  exit 0
fi

# ---- --egress: what a forward proxy costs ------------------------------------------------
if $egress; then
  # The upstreams are IP addresses, so neither proxy needs a resolver; both get credentials,
  # as in a corporate network, passed to snigate through ${ENV} references.
  export BENCH_PROXY_USER=bench BENCH_PROXY_PASSWORD="bench-pw-$$-$RANDOM"
  px=127.0.0.3
  mkdir -p "$work/squid"
  printf '%s:%s\n' "$BENCH_PROXY_USER" "$(openssl passwd -apr1 "$BENCH_PROXY_PASSWORD")" > "$work/squid/htpasswd"
  { echo "http_port $px:3128"; echo "pid_filename $work/squid/squid.pid"; echo "cache_log $work/squid/cache.log"
    echo "access_log none"; echo "coredump_dir $work/squid"; echo "cache deny all"; echo "max_filedescriptors 65536"
    echo "shutdown_lifetime 1 seconds"
    echo "auth_param basic program /usr/lib/squid/basic_ncsa_auth $work/squid/htpasswd"
    echo "acl authed proxy_auth REQUIRED"; echo "acl tunnel_ports port 9100"; echo "acl CONNECT method CONNECT"
    echo "http_access deny CONNECT !tunnel_ports"; echo "http_access allow authed"; echo "http_access deny all"
  } > "$work/squid/squid.conf"
  # Squid and its auth helper run as the user "proxy": let them reach their directory.
  chown -R proxy "$work/squid"; chmod o+x "$work"
  taskset -c 1 squid -N -f "$work/squid/squid.conf" > "$work/squid/out.log" 2>&1 &
  pids_started+=($!)
  taskset -c 1 microsocks -i "$px" -p 1080 -u "$BENCH_PROXY_USER" -P "$BENCH_PROXY_PASSWORD" > "$work/microsocks.log" 2>&1 &
  pids_started+=($!)
  wait_port "$px:3128" || { cat "$work/squid/out.log" "$work/squid/cache.log" >&2; exit 1; }
  wait_port "$px:1080" || { cat "$work/microsocks.log" >&2; exit 1; }
  # write_egress_config MODE: the usual 12 routes, direct or through one proxy.
  write_egress_config() {
    write_configs 1
    local url=""
    case "$1" in
      http_connect) url="http://\${BENCH_PROXY_USER}:\${BENCH_PROXY_PASSWORD}@$px:3128" ;;
      socks5) url="socks5://\${BENCH_PROXY_USER}:\${BENCH_PROXY_PASSWORD}@$px:1080" ;;
    esac
    [ -n "$url" ] && sed -i "s|^gateway:\$|gateway:\n  egress_proxy: $url|" "$work/snigate.yaml"
    "$bin/snigate" -t -c "$work/snigate.yaml" > /dev/null
  }
  egress_rate=1000; $quick && egress_rate=200
  modes=(direct http_connect socks5)
  for run in $(seq 1 "$runs"); do
    order=("${modes[@]:$(( (run - 1) % 3 ))}" "${modes[@]:0:$(( (run - 1) % 3 ))}")
    for mode in "${order[@]}"; do
      write_egress_config "$mode"
      echo "bench: run $run/$runs, open loop at $egress_rate/s: snigate, $mode"
      start_gateway snigate; pid_args_now
      taskset -c 1 "$loadgen" open --targets "$gw" --hellos "$work/hellos" --rate "$egress_rate" --prefix egress \
        --warmup-secs "$warm" --seconds "$open_secs" "${pid_args[@]}" --label "$mode" --out "$raw" --run "$run" \
        > /dev/null 2>> "$work/open.log" || failed "snigate $mode: the open loop"
      # Every connection must really have gone through the proxy (or not at all).
      if [ "$mode" != direct ]; then
        through=$(curl -s http://127.0.0.2:9080/metrics | awk '/^snigate_egress_proxy_connections_total\{.*result="ok"/ { s += $NF } END { printf "%d\n", s }')
        echo -e "$mode\tegress_through_proxy\t$through\t$run" >> "$raw"
        ((through > 0)) || failed "snigate $mode: no connection went through the proxy"
      fi
      stop_gateway
    done
  done
  # Per run: MODE's figure minus direct's (kind "minus") or over direct's ("over"), where a
  # figure is a metric or the sum of user and system CPU ("cpu"); the median over the runs.
  versus() { awk -F'\t' -v g="$1" -v m="$2" -v kind="$3" '
      m == "cpu" && ($2 == "egress_user_us" || $2 == "egress_sys_us") { v[$1 " " $4] += $3 }
      m != "cpu" && $2 == m { v[$1 " " $4] = $3 }
      END { for (k in v) { split(k, a, " "); d = "direct " a[2]
              if (a[1] == g && (d in v)) print (kind == "minus" ? v[k] - v[d] : (v[d] > 0 ? v[k] / v[d] : "-")) } }' "$raw" | mid; }
  cpu_median() { awk -F'\t' -v g="$1" '$1 == g && ($2 == "egress_user_us" || $2 == "egress_sys_us") { v[$4] += $3 }
      END { for (r in v) print v[r] }' "$raw" | mid; }
  results_file egress
  {
    echo "# What a forward proxy costs, $stamp"
    echo
    echo "\`bash load-tests/bench.sh --egress$($quick && echo " --quick") --runs $runs\`. snigate, one worker thread on CPU 0;"
    echo "load generator, upstreams, squid and microsocks on CPU 1. Open loop: new TLS connections at"
    echo "$egress_rate/s (Poisson arrivals) for ${open_secs}s after ${warm}s of warm-up, real ClientHellos for the 12"
    echo "routes; latency from each connection's scheduled start to the upstream's first byte back."
    echo "*direct*: the routes as usual; *http_connect*: every route through squid (CONNECT, basic"
    echo "auth); *socks5*: through microsocks (RFC 1929 username and password). The three alternate"
    echo "within each run; medians over $runs run(s)."
    echo
    echo "| route | p50 µs | p99 µs | p99.9 µs | failed | snigate user µs/conn | system µs/conn | CPU µs/conn |"
    echo "|---|---|---|---|---|---|---|---|"
    for m in "${modes[@]}"; do
      echo "| $m | $(median "$m" egress_p50_us) | $(median "$m" egress_p99_us) | $(median "$m" egress_p999_us) | $(median "$m" egress_failed) | $(median "$m" egress_user_us) | $(median "$m" egress_sys_us) | $(cpu_median "$m") |"
    done
    echo
    echo "| through the proxy, against direct (median of per-run figures) | http_connect | socks5 |"
    echo "|---|---|---|"
    echo "| added p50 latency, µs | $(versus http_connect egress_p50_us minus) | $(versus socks5 egress_p50_us minus) |"
    echo "| added p99 latency, µs | $(versus http_connect egress_p99_us minus) | $(versus socks5 egress_p99_us minus) |"
    echo "| snigate CPU per connection, ratio | $(versus http_connect cpu over) | $(versus socks5 cpu over) |"
    echo "| snigate CPU per connection, added µs | $(versus http_connect cpu minus) | $(versus socks5 cpu minus) |"
    echo
    echo "The added latency includes the proxy's own work (its accept, its connect to the upstream and,"
    echo "for squid, the auth check), which shares CPU 1 with the load side; the CPU figures are"
    echo "snigate's alone."
    echo
    echo "## Raw results (route, metric, value, run)"
    echo
    echo '```'; cat "$raw"; echo '```'
  } > "$file"
  cat "$file"
  echo "bench: results written to ${file#"$root"/}"
  ((failures)) && exit 1
  exit 0
fi

hello="$work/hellos/${names[0]}.bin"
for run in $(seq 1 "$runs"); do
  # Rotate the order, so that no gateway always goes first.
  order=("${gateways[@]:$(( (run - 1) % 5 ))}" "${gateways[@]:0:$(( (run - 1) % 5 ))}")
  # One workload at a time over every gateway, back to back, so that a slow minute on a
  # shared machine falls on all of them rather than on one; the connection rate, the most
  # sensitive, goes round $rate_rounds times.
  for round in $(seq 1 "$rate_rounds"); do
    for g in "${order[@]}"; do
      echo "bench: run $run/$runs, connection rate ($round/$rate_rounds): $g"
      start_gateway "$g"; pid_args_now
      taskset -c 1 "$loadgen" rate --targets "$(targets_of "$g")" --hellos "$work/hellos" --concurrency 32 \
        --warmup-secs "$warm" --seconds "$secs" "${pid_args[@]}" --label "$g" --out "$raw" --run "$run" > /dev/null \
        || failed "$g: the rate workload"
      stop_gateway
    done
  done
  # The same closed loop with two gateway threads (still on CPU 0), for how each scales.
  write_configs 2
  for g in "${order[@]}"; do
    case "$g" in snigate|haproxy|nginx) ;; *) continue ;; esac
    echo "bench: run $run/$runs, connection rate with 2 threads: $g"
    start_gateway "$g"; pid_args_now
    taskset -c 1 "$loadgen" rate --targets "$gw" --hellos "$work/hellos" --concurrency 32 --warmup-secs "$warm" \
      --seconds "$secs" "${pid_args[@]}" --prefix t2_ --label "$g" --out "$raw" --run "$run" > /dev/null \
      || failed "$g: the rate workload with 2 threads"
    stop_gateway
  done
  write_configs 1
  # Open loop at fixed fractions of the best peer's closed-loop rate in this run.
  best=$(best_peer_rate "$run")
  for pct in "${open_loads[@]}"; do
    offered=$(( best * pct / 100 )); ((offered > 0)) || offered=100
    for g in "${order[@]}"; do
      echo "bench: run $run/$runs, open loop at ${pct}% of $best/s ($offered/s): $g"
      start_gateway "$g"; pid_args_now
      taskset -c 1 "$loadgen" open --targets "$(targets_of "$g")" --hellos "$work/hellos" --rate "$offered" \
        --prefix "open$pct" --warmup-secs "$warm" --seconds "$open_secs" "${pid_args[@]}" --label "$g" \
        --out "$raw" --run "$run" > /dev/null 2>> "$work/open.log" || failed "$g: the open loop at ${pct}%"
      stop_gateway
    done
  done
  for g in "${order[@]}"; do
    echo "bench: run $run/$runs, bulk: $g"
    start_gateway "$g"
    one=$gw; [ "$g" = direct ] && one=${upstreams[0]}
    for dir in up down; do
      for conns in 1 16; do
        taskset -c 1 "$loadgen" bulk --target "$one" --hello "$hello" --conns "$conns" --direction "$dir" \
          --seconds "$bulk_secs" --label "$g" --out "$raw" --run "$run" > /dev/null || failed "$g: bulk $dir x$conns"
      done
    done
    stop_gateway
  done
  for g in "${order[@]}"; do
    [ "$g" = direct ] && continue
    echo "bench: run $run/$runs, idle: $g"
    # A fresh gateway for each count, so that neither reuses memory the other freed.
    for n in "$idle_small" "$idle_large"; do
      metric=kib_idle_small; [ "$n" = "$idle_large" ] && metric=kib_idle_large
      start_gateway "$g"; pid_args_now
      taskset -c 1 "$loadgen" idle --targets "$(targets_of "$g")" --hellos "$work/hellos" --conns "$n" \
        "${pid_args[@]}" --metric "$metric" --label "$g" --out "$raw" --run "$run" > /dev/null || failed "$g: idle x$n"
      stop_gateway
    done
  done
done

# Where the time goes, per connection, for snigate and the cheapest peer (the lowest CPU
# per connection at 50% load over the runs): system calls by name (strace -c, in a pass of
# its own, since strace slows the gateway), and user-space instructions and allocations
# (callgrind, zeroed once the gateway is up, dumped after the load).
breakdown=""
cheapest=""
if ! $quick && command -v strace > /dev/null && command -v valgrind > /dev/null; then
  cheapest=$(awk -F'\t' '($2 == "open50_user_us" || $2 == "open50_sys_us") && ($1 == "haproxy" || $1 == "nginx" || $1 == "sniproxy") {
      s[$1] += $3; if ($2 == "open50_user_us") n[$1]++ }
    END { best = ""; for (g in s) if (best == "" || s[g] / n[g] < s[best] / n[best]) best = g; print best }' "$raw")
  trace_rate=1000; trace_secs=3; cg_rate=200; cg_secs=5
  rows=()
  for g in snigate $cheapest; do
    echo "bench: where the time goes: $g (strace)"
    start_gateway "$g"
    tids=(); for p in "${gateway_pids[@]}"; do for t in /proc/"$p"/task/*; do tids+=(-p "${t##*/}"); done; done
    strace -c -f -o "$work/strace-$g.txt" "${tids[@]}" 2> /dev/null &
    strace_pid=$!
    sleep 0.5
    taskset -c 1 "$loadgen" open --targets "$gw" --hellos "$work/hellos" --rate "$trace_rate" --prefix trace \
      --warmup-secs 0 --seconds "$trace_secs" --label "$g" --out "$work/trace.tsv" > /dev/null 2>&1 || true
    kill -INT "$strace_pid" 2> /dev/null || true; wait "$strace_pid" 2> /dev/null || true
    stop_gateway
    trace_conns=$(awk -F'\t' -v g="$g" '$1 == g && $2 == "trace_completed" { print $3 }' "$work/trace.tsv" | tail -1)

    echo "bench: where the time goes: $g (callgrind)"
    cg=(valgrind -q --tool=callgrind --callgrind-out-file="$work/cg-$g.%p")
    case "$g" in
      snigate) RUST_LOG=warn taskset -c 0 "${cg[@]}" "$bin/snigate" --worker -c "$work/snigate.yaml" > "$work/cg-$g.log" 2>&1 & ;;
      haproxy) taskset -c 0 "${cg[@]}" haproxy -db -f "$work/haproxy.cfg" > "$work/cg-$g.log" 2>&1 & ;;
      nginx) sed 's/^daemon off;/daemon off; master_process off;/' "$work/nginx.conf" > "$work/nginx-single.conf"
        taskset -c 0 "${cg[@]}" nginx -p "$work" -c "$work/nginx-single.conf" > "$work/cg-$g.log" 2>&1 & ;;
      sniproxy) taskset -c 0 "${cg[@]}" sniproxy -f -c "$work/sniproxy.conf" > "$work/cg-$g.log" 2>&1 & ;;
    esac
    cg_pid=$!; pids_started+=("$cg_pid")
    wait_port "$gw" || true
    [ "$g" = snigate ] && for _ in $(seq 1 400); do curl -sf -o /dev/null "http://127.0.0.2:9080/ready" && break; sleep 0.05; done
    # One uncounted second first, so that what a gateway does once per route (snigate makes
    # a route's series on its first connection) is not charged to the connections counted.
    taskset -c 1 "$loadgen" open --targets "$gw" --hellos "$work/hellos" --rate "$cg_rate" --prefix cgwarm \
      --warmup-secs 0 --seconds 1 --max-in-flight 512 --label "$g" --out "$work/cg-warm.tsv" > /dev/null 2>&1 || true
    callgrind_control -z "$cg_pid" > /dev/null 2>&1 || true
    taskset -c 1 "$loadgen" open --targets "$gw" --hellos "$work/hellos" --rate "$cg_rate" --prefix cg \
      --warmup-secs 0 --seconds "$cg_secs" --max-in-flight 512 --label "$g" --out "$work/cg.tsv" > /dev/null 2>&1 || true
    callgrind_control -d "$cg_pid" > /dev/null 2>&1 || true
    kill -TERM "$cg_pid" 2> /dev/null || true; wait "$cg_pid" 2> /dev/null || true
    cg_conns=$(awk -F'\t' -v g="$g" '$1 == g && $2 == "cg_completed" { print $3 }' "$work/cg.tsv" | tail -1)
    dump=$(ls -t "$work"/cg-"$g".*.1 2> /dev/null | head -1 || true)
    rows+=("$("$loadgen" breakdown --gateway "$g" --strace "$work/strace-$g.txt" --strace-conns "${trace_conns:-0}" \
      ${dump:+--callgrind "$dump"} --callgrind-conns "${cg_conns:-0}")")
  done
  breakdown=$(printf '%s\n' "| gateway | system calls/conn | by name (per conn) | user instructions/conn | allocations/conn |" \
    "|---|---|---|---|---|" "${rows[@]}")
fi

# Where snigate's time goes on the connection-rate workload: a CPU profile, if perf works.
profile=""
if ! $quick && command -v perf > /dev/null; then
  start_gateway snigate
  worker=${gateway_pids[0]}
  if perf record -q -e cpu-clock -F 999 -g -p "$worker" -o "$work/perf.data" -- sleep 6 > /dev/null 2>&1 &
  then
    perf_pid=$!
    taskset -c 1 "$loadgen" rate --targets "$gw" --hellos "$work/hellos" --concurrency 32 --warmup-secs 0.5 \
      --seconds 5 --label profile --out "$work/profile.tsv" > /dev/null
    wait "$perf_pid" || true
    # Where the time is, by binary (kernel, snigate, libc), then the hottest symbols.
    profile=$( { echo "by binary:"
      perf report -i "$work/perf.data" --stdio --no-children --sort dso 2>/dev/null \
        | grep -E '^ +[0-9]' | head -8
      echo; echo "hottest symbols:"
      perf report -i "$work/perf.data" --stdio --no-children -g none --sort dso,sym --percent-limit 0.6 2>/dev/null \
        | grep -E '^ +[0-9]' | head -30; } || true)
  fi
  stop_gateway
fi

lookup=""
if ! $quick; then
  lookup=$(cd "$root" && cargo bench --locked --bench hotpath -- 'lookup/100k|status_page' --warm-up-time 1 --measurement-time 3 2>/dev/null \
    | awk '/^status page of/ { print; next }
           /^(lookup|status_page)\// { name = $1 }
           /time:/ { match($0, /\[[^]]*\]/); split(substr($0, RSTART + 1, RLENGTH - 2), v, " ");
                     print name, v[3], v[4] }' || true)
fi

table=$("$loadgen" report --results "$raw" --idle-small "$idle_small" --idle-large "$idle_large")
echo
echo "$table"
results_file
{
  echo "# Side-by-side benchmark, $stamp"
  echo
  echo "\`bash load-tests/bench.sh$($quick && echo " --quick") --runs $runs\`. Each gateway: one worker thread pinned to CPU 0,"
  echo "the same 12 routes, access logs off; load generator and upstreams pinned to CPU 1; real"
  echo "openssl ClientHellos. Connection rate: 32 concurrent clients each connect, send a hello,"
  echo "read the upstream's 64-byte reply and close, for ${secs}s after ${warm}s of warm-up,"
  echo "$rate_rounds time(s) a run; then once more with 2 gateway threads (still on CPU 0) for snigate, HAProxy"
  echo "(nbthread 2) and nginx (worker_processes 2). Open loop: new connections at ${open_loads[*]/%/%} of the"
  echo "best peer's closed-loop rate in the same run, Poisson arrivals, ${open_secs}s after ${warm}s of warm-up;"
  echo "latency from each connection's scheduled start to the upstream's first byte back; CPU is the"
  echo "gateway processes' own user and system time (/proc/PID/stat) over the connections completed."
  echo "Each workload goes round every gateway back to back."
  echo "Bulk: ${bulk_secs}s one way. Idle: ${idle_small} and ${idle_large} connections held open end to end."
  echo
  echo "$table"
  echo
  echo "## Machine"
  echo
  echo '```'
  echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
  echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB; kernel $(uname -r)"
  echo "snigate $("$bin/snigate" --version | awk '{print $2}') ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo "$(haproxy -v 2>/dev/null | head -1)"
  echo "$(nginx -v 2>&1)"
  echo "sniproxy $(dpkg-query -W -f='${Version}' sniproxy 2>/dev/null)"
  echo '```'
  if [ -n "$lookup" ]; then
    echo; echo "## Route lookup among 100,000 routes, and the status page of 10,000 (criterion, \`cargo bench --bench hotpath\`)"; echo
    echo '```'; echo "$lookup"; echo '```'
  fi
  if [ -n "$breakdown" ]; then
    echo; echo "## Where the time goes, per connection: snigate and the cheapest peer ($cheapest)"; echo
    echo "System calls: \`strace -c -f\` on every thread of the gateway, open loop at ${trace_rate:-}/s for ${trace_secs:-}s."
    echo "Instructions and allocations: callgrind, open loop at ${cg_rate:-}/s for ${cg_secs:-}s, counted from after"
    echo "start-up to the end of the load (idle work included), divided by the connections completed."
    echo; echo "$breakdown"
  fi
  if [ -n "$profile" ]; then
    echo; echo "## Where snigate's CPU goes on the connection-rate workload (perf, self time)"; echo
    echo '```'; echo "$profile"; echo '```'
  fi
  echo
  echo "## Raw results (gateway, metric, value; one line per run)"
  echo
  echo '```'; cat "$raw"; echo '```'
} > "$file"
echo "bench: results written to ${file#"$root"/}"
if ((failures)); then
  echo "bench: $failures workload(s) failed; their numbers are missing from the table" >&2
  exit 1
fi

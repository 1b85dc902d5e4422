#!/usr/bin/env bash
# snigate demo: a Kafka client that cannot reach the cloud, and snigate in between.
#
# Three network namespaces, created for this run and removed when it ends:
#
#   client 203.0.113.2 ──veth── 203.0.113.1  gateway  198.51.100.1 ──veth── 198.51.100.2 cloud
#
#   cloud    simcloud, a simulated Confluent Cloud cluster: bootstrap 198.51.100.10, brokers
#            .11-.13 (Kafka over TLS with SASL/PLAIN on 9092), REST .20 and Schema Registry
#            .21 (HTTPS with basic auth on 443), all with certificates from a demo CA.
#   gateway  snigate on 203.0.113.1:9092 and :443, one route per cloud name; its hosts file
#            maps each name to the cloud address.
#   client   its hosts file maps every cloud name to the gateway, and it has no route to the
#            cloud: everything it does goes through snigate.
#
# The walkthrough then uses real clients from the client namespace (kcat, simcloud's own
# producer and consumer group, openssl s_client, curl), one line per check.
#
#   bash load-tests/demo.sh          # run, print commands to try by hand, wait for Ctrl-C
#   bash load-tests/demo.sh --once   # run the walkthrough once and exit with its status
#
# Network namespaces need root: when not root, the script builds as the calling user and
# re-runs itself under sudo. Only TEST-NET addresses (RFC 5737) and the reserved .test TLD
# are used.
set -euo pipefail

once=false
case "${1:-}" in
  --once) once=true ;;
  "") ;;
  *) echo "usage: bash load-tests/demo.sh [--once]" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "demo: network namespaces need root, and sudo is not installed; run this as root" >&2
  exit 1
fi

# Set up and build as the calling user (so target/ keeps its owner), then become root.
# SNIGATE_DEMO_BUILT=1 marks the re-run under sudo, which skips this part.
if [ -z "${SNIGATE_DEMO_BUILT:-}" ]; then
  bash tests/setup.sh
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  echo "demo: building snigate and simcloud (release)…"
  if ! build_log=$(cargo build --release --locked --bins --workspace 2>&1); then
    grep -vE '^ *(Compiling|Checking|Downloaded|Downloading|Updating|Locking|Adding|Blocking|Building) ' \
      <<<"$build_log" >&2 || true
    echo "demo: build failed" >&2
    exit 1
  fi
fi
snigate=$repo/target/release/snigate
simcloud=$repo/target/release/simcloud
for b in "$snigate" "$simcloud"; do
  [ -x "$b" ] || { echo "demo: $b is missing; the build did not produce it" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
  if [ -n "${SNIGATE_DEMO_BUILT:-}" ]; then
    echo "demo: still not root after sudo; run this as root" >&2
    exit 1
  fi
  echo "demo: network namespaces need root; running the rest under sudo"
  exec sudo env SNIGATE_DEMO_BUILT=1 bash "$repo/load-tests/demo.sh" "$@"
fi

# --- names and addresses -----------------------------------------------------------------
ns_cloud=sg-cloud-$$
ns_gw=sg-gw-$$
ns_client=sg-client-$$
gw_ip=203.0.113.1 client_ip=203.0.113.2         # client link, TEST-NET-3
gw_cloud_ip=198.51.100.1 cloud_ip=198.51.100.2  # cloud link, TEST-NET-2
bootstrap_ip=198.51.100.10
broker_ips=(198.51.100.11 198.51.100.12 198.51.100.13)
rest_ip=198.51.100.20
sr_ip=198.51.100.21
admin=127.0.0.1:9080                             # inside the gateway namespace

cluster=pkc-sim01
region=eu-west-2
domain=$region.aws.confluent.test
bootstrap=$cluster.$domain
brokers=()
for i in "${!broker_ips[@]}"; do brokers+=("b$i-$cluster.$domain"); done
rest=pkac-${cluster#pkc-}.$domain
sr=psrc-${cluster#pkc-}.$domain
topic=demo

# Per-run demo credentials. The secret is never printed.
CLOUD_KEY=$(openssl rand -hex 8 | tr 'a-f' 'A-F')
CLOUD_SECRET=$(openssl rand -hex 32)
PKC_ENDPOINT=$bootstrap:9092
PKAC_ENDPOINT=$rest:443
SCHEMA_REGISTRY_ENDPOINT=https://$sr
SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=$CLOUD_KEY:$CLOUD_SECRET
run=$(openssl rand -hex 3)                       # tags this run's message keys

# --- clean-up ----------------------------------------------------------------------------
work=$(mktemp -d -t snigate-demo.XXXXXX)
made_ns=()
made_etc=()
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for ns in "${made_ns[@]}"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -TERM 2>/dev/null; done
  # snigate drains for grace_period_seconds (1 s); give everything a few seconds, then force.
  for _ in $(seq 50); do
    left=
    for ns in "${made_ns[@]}"; do left+=$(ip netns pids "$ns" 2>/dev/null); done
    [ -z "$left" ] && break
    sleep 0.1
  done
  for ns in "${made_ns[@]}"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null; done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for d in "${made_etc[@]}"; do rm -rf "$d"; done
  rm -rf "$work"
  exit "$rc"
}
on_signal() {
  echo
  echo "demo: stopping and cleaning up"
  if $once; then exit $((128 + $1)); else exit 0; fi
}
trap cleanup EXIT
trap 'on_signal 2' INT
trap 'on_signal 15' TERM

fail_setup() {
  echo "demo: $1" >&2
  for f in simcloud snigate; do
    [ -s "$work/$f.log" ] && { echo "--- last lines of $f.log ---" >&2; tail -n 20 "$work/$f.log" >&2; }
  done
  exit 1
}

# --- network namespaces -------------------------------------------------------------------
for ns in "$ns_cloud" "$ns_gw" "$ns_client"; do
  ip netns add "$ns" || fail_setup "cannot create network namespace $ns"
  made_ns+=("$ns")
  ip -n "$ns" link set lo up
done
in_cloud() { ip netns exec "$ns_cloud" "$@"; }
in_gw() { ip netns exec "$ns_gw" "$@"; }
in_client() { ip netns exec "$ns_client" "$@"; }

# Both links are made from inside the gateway namespace, so no name ever lands in the host's.
ip -n "$ns_gw" link add to-cloud type veth peer name to-gw netns "$ns_cloud"
ip -n "$ns_gw" link add to-client type veth peer name to-gw netns "$ns_client"
ip -n "$ns_gw" addr add "$gw_cloud_ip/24" dev to-cloud
ip -n "$ns_gw" addr add "$gw_ip/24" dev to-client
ip -n "$ns_cloud" addr add "$cloud_ip/24" dev to-gw
for ip in "$bootstrap_ip" "${broker_ips[@]}" "$rest_ip" "$sr_ip"; do
  ip -n "$ns_cloud" addr add "$ip/32" dev to-gw
done
ip -n "$ns_client" addr add "$client_ip/24" dev to-gw
for ns in "$ns_cloud" "$ns_gw" "$ns_client"; do
  for dev in $(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip -n "$ns" link set "$dev" up
  done
done
# The gateway must not route: the client reaches the cloud only through snigate.
in_gw sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward'

# --- the cloud ----------------------------------------------------------------------------
cloud_dir=$work/cloud
mkdir -p "$cloud_dir"
SIMCLOUD_KEY=$CLOUD_KEY SIMCLOUD_SECRET=$CLOUD_SECRET RUST_LOG=info \
  ip netns exec "$ns_cloud" "$simcloud" serve --dir "$cloud_dir" --cluster "$cluster" \
  --region "$region" --brokers "${#broker_ips[@]}" --bootstrap-ip "$bootstrap_ip" \
  --broker-ips "$(IFS=,; echo "${broker_ips[*]}")" --rest-ip "$rest_ip" --sr-ip "$sr_ip" \
  --topic "$topic:6" </dev/null >"$work/simcloud.log" 2>&1 &
simcloud_pid=$!
pids+=("$simcloud_pid")
for _ in $(seq 600); do
  [ -e "$cloud_dir/ready" ] && break
  kill -0 "$simcloud_pid" 2>/dev/null || fail_setup "simcloud exited before it was ready"
  sleep 0.1
done
[ -e "$cloud_dir/ready" ] || fail_setup "simcloud did not become ready within 60 s"
CA=$cloud_dir/ca.pem
[ -s "$CA" ] || fail_setup "simcloud wrote no $CA"

# Every cloud name, from the hosts lines simcloud wrote ("IP NAME").
cloud_names=()
while read -r ip name _; do
  [ -n "${name:-}" ] && [ "${ip:0:1}" != "#" ] && cloud_names+=("$name")
done <"$cloud_dir/hosts"
for n in "$bootstrap" "${brokers[@]}" "$rest" "$sr"; do
  printf '%s\n' "${cloud_names[@]}" | grep -qxF -- "$n" || fail_setup "simcloud's hosts file lacks $n"
done

# Gateway: the cloud names resolve to the cloud. Client: every cloud name resolves to the
# gateway, as the /etc/hosts edit of the HAProxy recipe does.
for ns in "$ns_gw" "$ns_client"; do
  mkdir -p "/etc/netns/$ns"
  made_etc+=("/etc/netns/$ns")
  printf '127.0.0.1 localhost\n::1 localhost\n' >"/etc/netns/$ns/hosts"
done
grep -v '^#' "$cloud_dir/hosts" >>"/etc/netns/$ns_gw/hosts"
for n in "${cloud_names[@]}"; do echo "$gw_ip $n"; done >>"/etc/netns/$ns_client/hosts"

# --- the gateway --------------------------------------------------------------------------
# One exact route per cloud name, like the recipe's one backend per name: REST and Schema
# Registry on 443, the Kafka endpoints on 9092.
conf=$work/snigate.yaml
{
  echo "pid_file: $work/snigate.pid"
  echo "upgrade_sock: $work/upgrade.sock"
  echo "grace_period_seconds: 1"
  echo "graceful_shutdown_timeout_seconds: 1"
  echo "gateway:"
  echo "  listeners:"
  echo "    - name: kafka"
  echo "      address: $gw_ip:9092"
  echo "    - name: https"
  echo "      address: $gw_ip:443"
  echo "  routes:"
  for n in "${cloud_names[@]}"; do
    case $n in pkac-* | psrc-*) port=443 ;; *) port=9092 ;; esac
    echo "    - sni: $n"
    echo "      upstream: $n:$port"
  done
  echo "  admin:"
  echo "    address: $admin"
} >"$conf"
in_gw "$snigate" -t -c "$conf" >"$work/snigate-t.out" 2>&1 \
  || { cat "$work/snigate-t.out" >&2; fail_setup "snigate -t rejected $conf"; }
RUST_LOG=info ip netns exec "$ns_gw" "$snigate" -c "$conf" </dev/null >"$work/snigate.out" 2>"$work/snigate.log" &
snigate_pid=$!
pids+=("$snigate_pid")
for _ in $(seq 200); do
  in_gw curl -sf -m 2 "http://$admin/ready" >/dev/null 2>&1 && break
  kill -0 "$snigate_pid" 2>/dev/null || fail_setup "snigate exited before it was ready"
  sleep 0.1
done
in_gw curl -sf -m 2 "http://$admin/ready" >/dev/null 2>&1 || fail_setup "snigate did not become ready within 20 s"

# For the by-hand commands: the demo's variables, secret included, in a root-only file.
env_file=$work/demo.env
(
  umask 077
  for v in PKC_ENDPOINT CLOUD_KEY CLOUD_SECRET PKAC_ENDPOINT SCHEMA_REGISTRY_ENDPOINT \
    SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO CA; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done >"$env_file"
)

# --- the walkthrough -----------------------------------------------------------------------
failures=0
step() { printf '%s ... ' "$1"; }
ok() { echo "ok ($1)"; }
bad() { # bad SUMMARY [OUTPUT]: one FAIL line, then the end of what the check printed
  echo "FAIL ($1)"
  failures=$((failures + 1))
  if [ -n "${2:-}" ]; then tail -n 15 <<<"$2" | sed 's/^/      | /'; fi
}
short() { echo "${1%%.*}"; } # b0-pkc-sim01.eu-west-2.aws.confluent.test -> b0-pkc-sim01
kcat_auth=(-b "$PKC_ENDPOINT" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN
  -X "sasl.username=$CLOUD_KEY" -X "sasl.password=$CLOUD_SECRET" -X "ssl.ca.location=$CA")

echo
echo "== Walkthrough: the client ($ns_client) reaches the cloud only through snigate ($ns_gw) =="

step "Checking the client cannot reach the cloud directly, only the gateway"
direct=$(in_client timeout 3 bash -c "</dev/tcp/$bootstrap_ip/9092" 2>&1) && direct_ok=true || direct_ok=false
via_gw=$(in_client timeout 3 bash -c "</dev/tcp/$gw_ip/9092" 2>&1) && gw_ok=true || gw_ok=false
why=$(grep -o 'connect: .*' <<<"$direct" | head -n 1)
why=${why#connect: }
if $direct_ok; then
  bad "$bootstrap_ip:9092 accepted a direct connection from the client"
elif ! $gw_ok; then
  bad "the gateway $gw_ip:9092 refused the client" "$via_gw"
else
  ok "$bootstrap_ip:9092: ${why:-timed out}; the gateway $gw_ip:9092 accepts"
fi

step "Verifying we can use kcat through snigate"
out=$(in_client timeout 30 kcat "${kcat_auth[@]}" -L 2>&1) || true
missing=()
for b in "${brokers[@]}"; do grep -qF " at $b:9092" <<<"$out" || missing+=("$b"); done
listed=$(grep -cE '^ +broker [0-9]+ at ' <<<"$out" || true)
if ((${#missing[@]} == 0)) && [ "$listed" -eq "${#brokers[@]}" ]; then
  ok "$listed brokers listed under their advertised names: $(for b in "${brokers[@]}"; do printf '%s ' "$(short "$b")"; done | sed 's/ $//')"
else
  bad "$listed brokers listed; missing ${missing[*]:-none}" "$out"
fi

step "Producing 1,000 keyed messages with kcat and consuming them back"
sent=$work/kcat-sent.txt
for i in $(seq 0 999); do echo "kcat-$run-$i:message $i from kcat"; done >"$sent"
pout=$(in_client timeout 60 kcat "${kcat_auth[@]}" -t "$topic" -P -K: <"$sent" 2>&1) && p_ok=true || p_ok=false
cout=$(in_client timeout 60 kcat "${kcat_auth[@]}" -t "$topic" -C -o beginning -e -q \
  -f '%p|%k:%s\n' 2>"$work/kcat-consume.err") && c_ok=true || c_ok=false
mine=$(grep -F "|kcat-$run-" <<<"$cout" || true)
got=$(cut -d'|' -f2- <<<"$mine" | sed '/^$/d' | sort)
parts=$(cut -d'|' -f1 <<<"$mine" | sed '/^$/d' | sort -u | wc -l)
ngot=$(sed '/^$/d' <<<"$got" | wc -l)
if ! $p_ok; then
  bad "kcat -P failed" "$pout"
elif [ "$got" = "$(sort "$sent")" ]; then
  ok "1000 produced; the same 1000 consumed back from $parts partitions"
else
  bad "1000 produced, $ngot of this run's consumed back$($c_ok || echo ", kcat -C failed")" \
    "$(cat "$work/kcat-consume.err")"
fi

step "Producing 1,000 messages with simcloud and consuming them in a group of 2"
prefix=sim-$run
pout=$(SIMCLOUD_KEY=$CLOUD_KEY SIMCLOUD_SECRET=$CLOUD_SECRET in_client timeout 90 "$simcloud" produce \
  --bootstrap "$PKC_ENDPOINT" --ca "$CA" --topic "$topic" --count 1000 --prefix "$prefix" 2>&1) \
  && p_ok=true || p_ok=false
if ! $p_ok; then
  bad "simcloud produce failed" "$pout"
else
  cout=$(SIMCLOUD_KEY=$CLOUD_KEY SIMCLOUD_SECRET=$CLOUD_SECRET in_client timeout 90 "$simcloud" consume \
    --bootstrap "$PKC_ENDPOINT" --ca "$CA" --topic "$topic" --group "demo-$run" --members 2 \
    --expect 1000 --prefix "$prefix" --timeout-secs 60 2>&1) && c_ok=true || c_ok=false
  summary=$(sed '/^$/d' <<<"$cout" | tail -n 1)
  if $c_ok; then
    ok "$(sed '/^$/d' <<<"$pout" | tail -n 1); $summary"
  else
    bad "produced 1000; the group did not get exactly them: $summary" "$cout"
  fi
fi

step "Verifying each Kafka name's certificate through snigate with openssl s_client"
verified=() out=
for n in "$bootstrap" "${brokers[@]}"; do
  o=$(in_client timeout 10 openssl s_client -connect "$n:9092" -servername "$n" -verify_return_error \
    -verify_hostname "$n" -CAfile "$CA" </dev/null 2>&1) || true
  if grep -q "Verify return code: 0 (ok)" <<<"$o"; then verified+=("$(short "$n")"); else out+="$n:"$'\n'"$o"$'\n'; fi
done
if [ -z "$out" ]; then
  ok "${#verified[@]} names verified against the demo CA: ${verified[*]}"
else
  bad "verified only ${verified[*]:-none}" "$out"
fi

# curl_json NAME URL: runs curl in the client namespace; sets code and body.
curl_json() {
  local f=$work/curl-body
  rm -f "$f"
  code=$(in_client timeout 20 curl -sS -u "$CLOUD_KEY:$CLOUD_SECRET" --cacert "$CA" \
    -o "$f" -w '%{http_code}' "$1" 2>"$work/curl.err") || true
  body=$(cat "$f" 2>/dev/null || true)
  body_line=$(tr -s '\r\n\t' '   ' <<<"$body" | cut -c1-80)
}

step "Calling REST (pkac) through snigate with curl"
want='{"error_code":404,"message":"HTTP 404 Not Found"}'
curl_json "https://$PKAC_ENDPOINT/subjects"
if [ "$code" = 404 ] && [ "$body" = "$want" ]; then
  ok "HTTP 404 $body, as the cloud answers"
else
  bad "HTTP $code, body $body_line" "$(cat "$work/curl.err")"
fi

step "Listing Schema Registry (psrc) subjects through snigate with curl"
curl_json "$SCHEMA_REGISTRY_ENDPOINT/subjects"
if [ "$code" = 200 ] && [ "${body:0:1}" = "[" ]; then
  ok "HTTP 200 ${body:0:60}"
else
  bad "HTTP $code, body $body_line" "$(cat "$work/curl.err")"
fi

step "Reading snigate's per-route connection counts from /metrics"
# Connections are counted when they close, so allow a moment for the last ones.
for _ in $(seq 50); do
  metrics=$(in_gw curl -s -m 2 "http://$admin/metrics" || true)
  counts=() zero=()
  for n in "$bootstrap" "${brokers[@]}" "$rest" "$sr"; do
    c=$(awk -v r="route=\"$n\"" '/^snigate_connections_total\{/ && index($0, r) && index($0, "outcome=\"ok\"") { s += $NF }
      END { printf "%d", s }' <<<"$metrics")
    counts+=("$(short "$n") $c")
    if [ "$c" -eq 0 ] && [[ $n != pkac-* && $n != psrc-* ]]; then zero+=("$(short "$n")"); fi
  done
  ((${#zero[@]} == 0)) && break
  sleep 0.1
done
summary=$(printf '%s, ' "${counts[@]}")
if ((${#zero[@]} == 0)); then
  ok "relayed connections per route: ${summary%, }"
else
  bad "no relayed connections for ${zero[*]}: ${summary%, }" "$(grep '^snigate_connections_total' <<<"$metrics")"
fi

if ((failures)); then
  echo
  echo "demo: $failures step(s) failed"
  for f in snigate simcloud; do
    echo "--- last lines of $f.log ---"
    tail -n 20 "$work/$f.log"
  done
fi
if $once; then exit $((failures != 0)); fi

echo
echo "== Routes (ip netns exec $ns_gw curl -s http://$admin/routes) =="
in_gw curl -s -m 2 "http://$admin/routes" || true
echo
echo "== Try it yourself, as root (sudo -s) =="
echo "  source $env_file   # sets PKC_ENDPOINT, CLOUD_KEY, CLOUD_SECRET, PKAC_ENDPOINT, SCHEMA_REGISTRY_*, CA"
echo "  ip netns exec $ns_client kcat -b \"\$PKC_ENDPOINT\" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \\"
echo "      -X sasl.username=\"\$CLOUD_KEY\" -X sasl.password=\"\$CLOUD_SECRET\" -X ssl.ca.location=\"\$CA\" -L"
echo "  ip netns exec $ns_client openssl s_client -connect ${brokers[0]}:9092 -servername ${brokers[0]} -CAfile \"\$CA\" </dev/null"
echo "  ip netns exec $ns_client curl -u \"\$CLOUD_KEY:\$CLOUD_SECRET\" --cacert \"\$CA\" https://\$PKAC_ENDPOINT/subjects"
echo "  ip netns exec $ns_client curl -u \"\$SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO\" --cacert \"\$CA\" \$SCHEMA_REGISTRY_ENDPOINT/subjects"
echo "  ip netns exec $ns_client bash -c '</dev/tcp/$bootstrap_ip/9092'   # fails: no route to the cloud"
echo "  ip netns exec $ns_client bash     # a shell on the client; its /etc/hosts points every cloud name at $gw_ip"
echo "  ip netns exec $ns_gw curl -s http://$admin/metrics | grep '^snigate_'"
echo "  tail -f $work/snigate.log     # one access-log line per connection"
echo
echo "demo: running; press Ctrl-C to stop and clean up"
sleep infinity &
pids+=($!)
wait $!

#!/usr/bin/env bash
# snigate demo: a stand-in for a Confluent Cloud cluster (bootstrap, three brokers and a
# Schema Registry, each a real TLS server with its own certificate from a demo CA), with
# snigate in front, routing by SNI. It walks through what it checks, one line per step,
# then keeps running for you to poke at until Ctrl-C.
#
#   bash load-tests/demo.sh          # run, then wait for Ctrl-C
#   bash load-tests/demo.sh --once   # run the walkthrough once and exit with its status
#
# Everything listens on 127.77.0.x, so nothing leaves this machine, and every name is
# under the reserved .test TLD.
set -euo pipefail
cd "$(dirname "$0")/.."
once=false
[ "${1:-}" = "--once" ] && once=true

bash tests/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "demo: building snigate (release)…"
cargo build --release --locked --bin snigate 2>&1 | grep -E "^(error|warning: unused)" || true
bin=target/release/snigate
[ -x "$bin" ] || { echo "demo: build failed" >&2; exit 1; }

work=$(mktemp -d -t snigate-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; exit 0' INT TERM

region=eu-west-2.aws.confluent.test
cluster=pkc-demo1
gw=127.77.0.1
names=("$cluster.$region" "b0-$cluster.$region" "b1-$cluster.$region" "b2-$cluster.$region" "psrc-demo1.$region")
ips=(127.77.0.10 127.77.0.11 127.77.0.12 127.77.0.13 127.77.0.20)
ports=(9092 9092 9092 9092 8443)

openssl ecparam -genkey -name prime256v1 -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -days 1 -subj "/CN=snigate demo CA" -out "$work/ca.pem" 2>/dev/null
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
for i in "${!names[@]}"; do
  n=${names[$i]}
  openssl ecparam -genkey -name prime256v1 -noout -out "$work/$n.key" 2>/dev/null
  openssl req -new -key "$work/$n.key" -subj "/CN=$n" -out "$work/$n.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$n" > "$work/$n.ext"
  openssl x509 -req -in "$work/$n.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 1 -extfile "$work/$n.ext" -out "$work/$n.pem" 2>/dev/null
  openssl s_server -quiet -www -accept "${ips[$i]}:${ports[$i]}" -cert "$work/$n.pem" -key "$work/$n.key" \
    </dev/null >/dev/null 2>&1 &
  pids+=($!)
done
for i in "${!names[@]}"; do wait_port "${ips[$i]}" "${ports[$i]}"; done

cat > "$work/snigate.yaml" <<YAML
pid_file: $work/snigate.pid
upgrade_sock: $work/upgrade.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
gateway:
  listeners:
    - name: kafka
      address: $gw:9092
    - name: https
      address: $gw:8443
  routes:
    - sni: ${names[0]}
      upstream: ${names[0]}:9092
      addresses: [${ips[0]}]
    - sni: ${names[1]}
      upstream: ${names[1]}:9092
      addresses: [${ips[1]}]
    - sni: ${names[2]}
      upstream: ${names[2]}:9092
      addresses: [${ips[2]}]
    - sni: ${names[3]}
      upstream: ${names[3]}:9092
      addresses: [${ips[3]}]
    - sni: "*.$region"
      upstream: "{sni}:{port}"
      addresses: [${ips[4]}]
  admin:
    address: $gw:9080
YAML
"$bin" -t -c "$work/snigate.yaml"
RUST_LOG=info "$bin" -c "$work/snigate.yaml" >"$work/snigate.out" 2>"$work/snigate.log" &
pids+=($!)
for _ in $(seq 200); do curl -sf "http://$gw:9080/ready" >/dev/null && break; sleep 0.05; done
curl -sf "http://$gw:9080/ready" >/dev/null || { echo "demo: snigate did not become ready"; cat "$work/snigate.log"; exit 1; }

failures=0
step() { printf '  %-52s ' "$1"; }
ok() { echo "ok   ($1)"; }
bad() { echo "FAIL ($1)"; failures=$((failures + 1)); }

echo
echo "== Walkthrough: every cloud name resolves to snigate at $gw; each check goes through it =="
for i in 0 1 2 3; do
  n=${names[$i]}
  step "openssl s_client -servername ${n%%.*}…"
  out=$(timeout 10 openssl s_client -connect "$gw:9092" -servername "$n" -verify_return_error \
        -verify_hostname "$n" -CAfile "$work/ca.pem" </dev/null 2>&1 || true)
  if grep -q "Verify return code: 0 (ok)" <<<"$out"; then ok "verified the certificate of ${n%%.*}"; else bad "no verified handshake"; fi
done
n=${names[4]}
step "curl https://${n%%.*}… (Schema Registry stand-in)"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/ca.pem" \
       --connect-to "$n:8443:$gw:8443" "https://$n:8443/" || true)
if [ "$code" = 200 ]; then ok "HTTP $code from the right certificate"; else bad "HTTP $code"; fi
step "an unknown name is refused (deny by default)"
out=$(timeout 10 openssl s_client -connect "$gw:9092" -servername evil.example.test </dev/null 2>&1 || true)
if grep -q "unrecognized name" <<<"$out"; then ok "TLS alert unrecognized_name"; else bad "not refused"; fi
step "snigate counted each route's connections"
m=$(curl -s "http://$gw:9080/metrics")
count=$(grep -c '^snigate_connections_total{.*outcome="ok"' <<<"$m" || true)
if [ "$count" -ge 5 ]; then ok "$count routes with ok connections"; else bad "only $count routes counted"; fi

echo
echo "== Routes (GET http://$gw:9080/routes) =="
curl -s "http://$gw:9080/routes"
echo
echo "== Try it yourself =="
echo "  openssl s_client -connect $gw:9092 -servername ${names[1]} -CAfile $work/ca.pem </dev/null"
echo "  curl --cacert $work/ca.pem --connect-to ${names[4]}:8443:$gw:8443 https://${names[4]}:8443/"
echo "  curl http://$gw:9080/metrics | grep snigate_"
echo "  tail -f $work/snigate.log      # one access-log line per connection"
if [ "$failures" -ne 0 ]; then echo "demo: $failures step(s) failed"; fi
if $once; then exit $((failures != 0)); fi
echo
echo "demo: running; press Ctrl-C to stop and clean up"
while true; do sleep 3600; done

#!/usr/bin/env bash
# Instructions per request of the router (callgrind counts instructions, so the figure
# does not depend on the machine's load): the bench example's subgraphs serve the
# benchmark supergraph, the router runs under callgrind, and for each query a warm-up,
# then exactly N sequential requests on one keep-alive connection between a zeroing
# and a dump of the counters.
#
#   scripts/router-instructions.sh [ROUTER_BIN] [N]
#   HIVE_ROUTER=<hive_router binary> scripts/router-instructions.sh - [N]   (the peer)
#
# The dumps are kept as $CG_PREFIX.nested.out / .single.out (default /tmp/callgrind),
# the last response of each as $CG_PREFIX.nested.json / .single.json.
# ROUTER_BIN defaults to the `profiling` build; the bench example must be built too:
#   cargo build -p router --profile profiling --examples --bins
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}
router=${1:-$target/profiling/router}
n=${2:-200}
bench=${BENCH_BIN:-$target/profiling/examples/bench}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

BENCH_SERVE_ONLY=1 "$bench" >"$work/bench.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 300); do grep -q '^SUPERGRAPH ' "$work/bench.out" && break; sleep 0.1; done
supergraph=$(sed -n 's/^SUPERGRAPH //p' "$work/bench.out")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ -n "${HIVE_ROUTER:-}" ]; then
  # The peer, Hive Router, measured the same way: it is configured by its environment
  # (subgraph de-duplication on, its default, as ours).
  router=$HIVE_ROUTER
  args=()
  export SUPERGRAPH_FILE_PATH=$supergraph HOST=127.0.0.1 PORT=$port LOG_LEVEL=error
else
  args=(--supergraph "$supergraph" --listen "127.0.0.1:$port")
fi
RUST_LOG=error valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$work/cg.%p" \
  "$router" "${args[@]}" >/dev/null 2>"$work/vg.err" &
vg=$!
pids+=($vg)

python3 - "$port" "$n" "$vg" "$work" "${CG_PREFIX:-/tmp/callgrind}" <<'PY'
import http.client, json, subprocess, sys, time, glob
port, n, pid, work, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
nested = """fragment User on User { id username name }
fragment Review on Review { id body }
fragment Product on Product { inStock name price shippingEstimate upc weight }
query TestQuery {
  users { ...User reviews { ...Review product { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } } }
  topProducts { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } }
}"""
single = "{ topProducts { upc name price weight } }"
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/graphql", body='{"query":"{ __typename }"}', headers={"content-type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status == 200:
            break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("router did not become ready")

def run(query, count):
    body = json.dumps({"query": query})
    last = None
    for _ in range(count):
        c.request("POST", "/graphql", body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        last = r.read()
        assert r.status == 200, last
    doc = json.loads(last)
    assert "errors" not in doc and doc.get("data"), last[:500]
    return last

def total():
    before = set(glob.glob(f"{work}/cg.*"))
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    for _ in range(100):
        new = set(glob.glob(f"{work}/cg.*")) - before
        if new:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    (path,) = new
    for line in open(path):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1]), path
    sys.exit("no totals in " + path)

for name, query in (("nested", nested), ("single", single)):
    run(query, 20)
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    body = run(query, n)
    ir, path = total()
    print(f"{name}: {ir / n:,.0f} instructions/request ({n} requests, dump {path})")
    subprocess.run(["cp", path, f"{prefix}.{name}.out"])
    open(f"{prefix}.{name}.json", "wb").write(body)
PY

#!/usr/bin/env bash
# All-in-one local cluster for `make run`: a control plane on the embedded
# NATS default (127.0.0.1:4222), one local agent, the example modules pushed
# and manifests/examples applied. `make stop` (scripts/run.sh stop) ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
SERVER=${EDGE_SERVER:-nats://127.0.0.1:4222}
LISTEN=${SERVER#nats://}
CTL=(bin/edgectl --server "$SERVER")

stop() {
  for p in agent controlplane; do
    if [ -f "$RUN/$p.pid" ]; then
      pid=$(cat "$RUN/$p.pid")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "stopped $p (pid $pid)"
      fi
      rm -f "$RUN/$p.pid"
    fi
  done
}

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# retry CMD... until it succeeds or ~N seconds pass.
retry() {
  local secs=$1; shift
  for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  "$@"
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

mkdir -p "$RUN"
if running controlplane; then
  echo "control plane already running (pid $(cat $RUN/controlplane.pid)); 'make stop' first to start afresh"
else
  bin/edge-controlplane --data-dir "$RUN/controlplane" --listen "$LISTEN" >"$RUN/controlplane.log" 2>&1 &
  echo $! >"$RUN/controlplane.pid"
  echo "control plane started (pid $!), NATS at $SERVER, log $RUN/controlplane.log"
fi
if ! retry 20 "${CTL[@]}" get namespaces; then
  echo "control plane did not come up; see $RUN/controlplane.log:" >&2
  tail -20 "$RUN/controlplane.log" >&2
  stop; exit 1
fi
if ! running agent; then
  bin/edge-agent --server "$SERVER" --node-name local --data-dir "$RUN/agent" --labels site=local \
    >"$RUN/agent.log" 2>&1 &
  echo $! >"$RUN/agent.pid"
  echo "agent 'local' started (pid $!), log $RUN/agent.log"
fi
"${CTL[@]}" wait --for=condition=Ready node/local --timeout=30s

for m in wasm/build/hello.wasm; do
  name=$(basename "$m" .wasm)
  "${CTL[@]}" push "$m" --name "$name:latest"
done
"${CTL[@]}" apply -f manifests/examples/
"${CTL[@]}" wait --for=condition=Ready pod/hello --timeout=60s
"${CTL[@]}" get pods -o wide

cat <<EOT

The cluster is running. Try:
  export PATH=\$PWD/bin:\$PATH
  edgectl get nodes -o wide
  edgectl get pods -o wide
  edgectl logs -f hello              # a line with "hello" every second
  edgectl describe pod hello
  edgectl apply -f manifests/examples/   # unchanged
  edgectl delete pod hello
  make stop                          # stop the control plane and the agent
EOT

#!/usr/bin/env bash
# All-in-one local cluster for `make run`: a control plane on the embedded
# NATS default (127.0.0.1:4222), one local agent, the example modules pushed
# and manifests/examples applied. `make stop` (scripts/run.sh stop) ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
SERVER=${EDGE_SERVER:-nats://127.0.0.1:4222}
LISTEN=${SERVER#*://}
# NATS over TLS with the CA the control plane generates in its data dir;
# EDGE_DEV=1 runs in dev mode instead (plaintext, see docs/security.md).
CA=$RUN/controlplane/tls/ca.pem
if [ -n "${EDGE_DEV:-}" ]; then CP_FLAGS=(--dev); TLS=(); else CP_FLAGS=(); TLS=(--tls-ca "$CA"); fi
# Authentication is on outside dev mode: edgectl uses the admin creds the
# control plane writes, the agent joins once with a join token.
CREDS=$RUN/controlplane/auth/admin.creds
if [ -n "${EDGE_DEV:-}" ]; then AUTH=(); else AUTH=(--creds "$CREDS"); fi
CTL=(bin/edgectl --server "$SERVER" ${TLS[@]+"${TLS[@]}"} ${AUTH[@]+"${AUTH[@]}"})

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
  bin/edge-controlplane --data-dir "$RUN/controlplane" --listen "$LISTEN" ${CP_FLAGS[@]+"${CP_FLAGS[@]}"} \
    >"$RUN/controlplane.log" 2>&1 &
  echo $! >"$RUN/controlplane.pid"
  echo "control plane started (pid $!), NATS at $SERVER, log $RUN/controlplane.log"
fi
if ! retry 20 "${CTL[@]}" get namespaces; then
  echo "control plane did not come up; see $RUN/controlplane.log:" >&2
  tail -20 "$RUN/controlplane.log" >&2
  stop; exit 1
fi
if ! running agent; then
  TOKEN=
  if [ -z "${EDGE_DEV:-}" ]; then
    # Credentials of an earlier control plane (its data dir was removed)
    # are worthless: join again.
    if [ -f "$RUN/agent/node.creds" ] && [ "$RUN/agent/node.creds" -ot "$RUN/controlplane/auth/operator.nk" ]; then
      rm -f "$RUN/agent/node.creds"
    fi
    if [ ! -f "$RUN/agent/node.creds" ]; then
      TOKEN=$("${CTL[@]}" token create --ttl 10m --node local)
    fi
  fi
  EDGE_JOIN_TOKEN=$TOKEN bin/edge-agent --server "$SERVER" ${TLS[@]+"${TLS[@]}"} --node-name local --data-dir "$RUN/agent" --labels site=local \
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

TRY_TLS=
if [ -z "${EDGE_DEV:-}" ]; then
  TRY_TLS="
  export EDGE_TLS_CA=\$PWD/$CA   # the control plane's CA (NATS over TLS)
  export EDGE_CREDS=\$PWD/$CREDS   # admin; $RUN/controlplane/auth/readonly.creds reads only"
fi
cat <<EOT

The cluster is running. Try:
  export PATH=\$PWD/bin:\$PATH$TRY_TLS
  edgectl get nodes -o wide
  edgectl get pods -o wide
  edgectl logs -f hello              # a line with "hello" every second
  edgectl describe pod hello
  edgectl apply -f manifests/examples/   # unchanged
  edgectl delete pod hello
  make stop                          # stop the control plane and the agent
EOT

# Edge orchestrator. `make run` starts a local cluster; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := bin
WASM_SRC := $(wildcard wasm/src/*.c)
WASM_OUT := $(patsubst wasm/src/%.c,wasm/build/%.wasm,$(WASM_SRC))
WASM_CC ?= clang
WASM_CFLAGS ?= --target=wasm32-wasi --sysroot=/usr -O2 -Wall
LDFLAGS := -s -w
# Core packages run with the race detector.
pkgs = $(strip $(foreach d,$(1),$(if $(wildcard $(d)/),./$(d)/...)))
RACE_PKGS := $(call pkgs,manifests runtime images messaging client controlplane edgeagent edgectl sim)
OTHER_PKGS := $(call pkgs,cmd test wasm)

.PHONY: all build wasm deps run stop test bench peers fmt vet clean cross cross-check

all: build

## deps: install the system packages the build and tests need (as root, when missing)
deps:
	@scripts/deps.sh

## wasm: build the example and test modules from wasm/src
wasm: $(WASM_OUT)

wasm/build/%.wasm: wasm/src/%.c
	@mkdir -p wasm/build
	$(WASM_CC) $(WASM_CFLAGS) -o $@.tmp $< && mv $@.tmp $@

## build: the three binaries in bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/edgectl ./cmd/edge-controlplane ./cmd/edge-agent

## cross: the agent for linux/arm64 and linux/armv7 boards (CGO off, static) in
## bin/linux-<arch>/, with edgectl for both and the control plane for arm64
CROSS := arm64:arm64: armv7:arm:7
cross:
	@set -e; for t in $(CROSS); do IFS=: read -r dir arch arm <<< "$$t"; \
	  echo "GOOS=linux GOARCH=$$arch$${arm:+ GOARM=$$arm} -> $(BIN)/linux-$$dir/"; \
	  pkgs="./cmd/edge-agent ./cmd/edgectl"; [ "$$arch" = arm64 ] && pkgs="$$pkgs ./cmd/edge-controlplane"; \
	  mkdir -p $(BIN)/linux-$$dir; \
	  GOOS=linux GOARCH=$$arch GOARM=$$arm CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linux-$$dir/ $$pkgs; \
	done; \
	for f in $(BIN)/linux-*/*; do printf '%-36s %s\n' "$$f" "$$(numfmt --to=iec --suffix=B $$(stat -c %s "$$f"))"; done

# cross-check (part of test): the agent and edgectl compile for both boards;
# compile only, nothing linked or written (go build caches: seconds when warm).
cross-check:
	@set -e; for t in $(CROSS); do IFS=: read -r dir arch arm <<< "$$t"; \
	  GOOS=linux GOARCH=$$arch GOARM=$$arm CGO_ENABLED=0 $(GO) build -trimpath ./cmd/edge-agent ./cmd/edgectl; \
	done

## run: an all-in-one local cluster (control plane + one agent) with the examples applied
run: deps build wasm
	@scripts/run.sh

## stop: stop what `make run` started
stop:
	@scripts/run.sh stop

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## test: install what is missing, then every test (race detector on the core packages)
test: deps wasm fmt vet cross-check
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(if $(OTHER_PKGS),$(GO) test -count=1 -timeout 15m $(OTHER_PKGS))

## bench: Go benchmarks and harnesses that print figures, then a table of the
## issue-8 figures against their goals (docs/BENCHMARKS.md). Each harness runs
## even if one before it failed (a missing harness is skipped); bench fails at
## the end if any did; one is stopped after BENCH_TIMEOUT seconds.
## Figures: .run/bench/figures.tsv, output: .run/bench/bench.log.
BENCH_DIR := .run/bench
BENCH_HARNESSES := test/bench test/bench/latency test/bench/agentmem test/bench/apply test/bench/scale test/bench/fleet test/bench/rollout
BENCH_TIMEOUT ?= 600
bench: deps wasm build
	@mkdir -p $(BENCH_DIR) && rm -f $(BENCH_DIR)/figures.tsv $(BENCH_DIR)/bench.log $(BENCH_DIR)/bench.log.tmp
	@set -o pipefail; export EDGE_BENCH_OUT=$(abspath $(BENCH_DIR))/figures.tsv; failed=; \
	{ \
	  $(GO) test -run '^$$' -bench . -benchtime 100x -count 1 ./runtime/wasm/ ./runtime/oci/ 2>&1 | grep --line-buffered -E '^(Benchmark|FAIL|goos|cpu)' || true; \
	  $(GO) test -run '^$$' -bench . -benchtime 2s -count 1 ./controlplane/... 2>&1 | grep --line-buffered -E '^(Benchmark|FAIL)' || true; \
	  $(GO) test -run '^$$' -bench BenchmarkProxyTCP -count 1 ./edgeagent/proxy/ 2>&1 | grep --line-buffered -E '^(Benchmark|FAIL)' || true; \
	  for h in $(BENCH_HARNESSES); do \
	    if [ ! -d $$h ]; then echo "== $$h: not in this tree, skipped"; continue; fi; \
	    args=; [ $$h = test/bench/rollout ] && args="-nodes 1000"; \
	    echo "== $$h"; start=$$(date +%s); \
	    EDGE_BENCH_HARNESS=$$h timeout -k 30 $(BENCH_TIMEOUT) $(GO) run ./$$h $$args 2>&1 || { echo "== $$h FAILED (exit $$?; 124: over $(BENCH_TIMEOUT) s)"; failed="$$failed $$h"; }; \
	    echo "== $$h: $$(( $$(date +%s) - start )) s"; \
	  done; \
	  $(GO) run ./test/bench/summary -in $(BENCH_DIR)/figures.tsv -log $(BENCH_DIR)/bench.log.tmp; \
	  if [ -n "$$failed" ]; then echo "bench: failed:$$failed"; exit 1; fi; \
	} 2>&1 | tee $(BENCH_DIR)/bench.log.tmp; rc=$$?; mv $(BENCH_DIR)/bench.log.tmp $(BENCH_DIR)/bench.log; exit $$rc

## peers: the same scenarios against our binaries and the peers named by
## NOMAD_BIN and K3S_BIN (skipped when unset), with ratios ours/peer
peers: deps wasm build
	$(GO) run ./test/peers

clean:
	rm -rf $(BIN) wasm/build .run

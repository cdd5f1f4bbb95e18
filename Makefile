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

.PHONY: all build wasm deps run stop test bench fmt vet clean cross

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
test: deps wasm fmt vet
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(if $(OTHER_PKGS),$(GO) test -count=1 -timeout 15m $(OTHER_PKGS))

## bench: Go benchmarks and harnesses that print figures
bench: deps wasm build
	$(GO) test -run '^$$' -bench . -benchtime 200x -count 1 ./runtime/wasm/ ./runtime/oci/ ./controlplane/... 2>&1 | grep -E '^(Benchmark|FAIL|goos|cpu)' || true
	$(GO) test -run '^$$' -bench BenchmarkProxyTCP -count 1 ./edgeagent/proxy/ 2>&1 | grep -E '^(Benchmark|FAIL)' || true
	$(GO) run ./test/bench
	$(GO) run ./test/bench/fleet
	$(GO) run ./test/bench/rollout -nodes 1000

clean:
	rm -rf $(BIN) wasm/build .run

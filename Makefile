# One command builds everything, plugins included. Every build shares one target dir
# outside the clone so wasmtime/cranelift compile once per machine, not per clone.
CARGO_TARGET_DIR ?= $(HOME)/.cache/medic/target
export CARGO_TARGET_DIR
PLUGIN_DIST := $(CURDIR)/plugins/dist

.PHONY: all build plugins ui test demo lint bench

all: build

# Plugins are their own workspace (probe, mysql), built for wasm32-wasip2 (each a WASI
# component); every member lands in plugins/dist.
plugins:
	rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
	cd plugins && cargo build --release --target wasm32-wasip2
	mkdir -p $(PLUGIN_DIST)/fixtures
	# Test fixtures (the hostile plugins) go apart, into dist/fixtures: never found by a
	# plain --plugin-dir plugins/dist, so the demo, listings and fuzzing never meet them.
	for f in $(CARGO_TARGET_DIR)/wasm32-wasip2/release/*.wasm; do \
	  case "$$(basename "$$f")" in hostile*) cp "$$f" $(PLUGIN_DIST)/fixtures/ ;; *) cp "$$f" $(PLUGIN_DIST)/ ;; esac; \
	done

# The web UI (ui/, Vite): built into ui/dist, which the medic binary embeds
# (engine/src/api/ui.rs). Needs Node 20+ and npm at build time only; rebuilt when its
# sources or lock file change. A plain `cargo build` without it still works: /ui/ then
# says to run `make build`.
UI_SRC := $(shell find ui/src -type f 2>/dev/null) ui/index.html ui/vite.config.ts ui/tsconfig.json ui/package.json

ui: ui/dist/index.html

ui/node_modules/.package-lock.json: ui/package-lock.json ui/package.json
	cd ui && npm ci --no-audit --no-fund

ui/dist/index.html: $(UI_SRC) ui/node_modules/.package-lock.json
	cd ui && npm run build

build: plugins ui
	cargo build --release --workspace

test: build
	cargo test --release --workspace
	# The plugins' own unit tests (their pure parts, on the host; probe and the hostile
	# fixtures only build for wasm32-wasip2, and are tested through medic above).
	cd plugins && cargo test --release -p ceph -p consul -p etcd -p kafka -p mysql

# medic's main job on embedded defaults: run a recovery plan (database under
# ~/.local/state/medic; no server needed).
demo: build
	$(CARGO_TARGET_DIR)/release/medic --plugin-dir plugins/dist run plans/examples/demo.yaml

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	cd plugins && cargo fmt --all -- --check && cargo clippy --release --target wasm32-wasip2 -- -D warnings
	cd sdk/template && cargo fmt -- --check && cargo clippy --release --target wasm32-wasip2 -- -D warnings

# Prints engine throughput, per-step overhead and the machine's SQLite commit limit,
# the plugin host's load (cold vs cached) and per-call overhead (pooled vs on-demand),
# then load on the real `medic serve` (submissions/s, latency, GET /v1/runs/{id}/s).
bench: build
	cargo bench -p medic --bench engine
	cargo bench -p medic --bench plugin
	cargo bench -p medic-tests --bench api_load
	cargo bench -p medic-tests --bench schedule_fire

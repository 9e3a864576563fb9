# Finetune Studio. `make run` and `make test` are the two commands a newcomer
# needs; everything they depend on is installed by deploy/scripts/install-tools.sh.

GO        ?= go
TOOLS_DIR ?= $(HOME)/.cache/finetune-studio/tools
export TOOLS_DIR
export PATH := $(TOOLS_DIR)/bin:$(PATH)

# Integration tests start real Postgres, MinIO, Caddy and Pebble: generous,
# since a loaded 2-core machine is the norm, not the exception.
TEST_TIMEOUT ?= 30m
# -count=1: the integration tests depend on servers and binaries that Go's
# test cache cannot see, so a cached pass proves nothing about this machine.
GOTESTFLAGS  ?= -count=1

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)

.PHONY: all build ui run test test-go test-faults lint bench test-containers test-backup test-deploy test-security tools tools-bench tools-containers tools-security fmt clean

all: build

build: ## Build bin/app and bin/edge.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/app ./app
	@if [ -d edge ]; then $(GO) build -trimpath -o bin/edge ./edge; fi

tools: ## Install what run and test need (apt packages, pinned Go tools).
	deploy/scripts/install-tools.sh test

tools-bench:
	deploy/scripts/install-tools.sh bench

tools-containers:
	deploy/scripts/install-tools.sh containers

tools-security:
	deploy/scripts/install-tools.sh security

ui: ## Rebuild the web UI (edge/ui-src -> edge/ui; commit the result).
	edge/scripts/build-ui.sh

run: tools build ui ## Start Postgres, MinIO, the app and the edge locally; Ctrl-C stops all.
	deploy/scripts/run-local.sh

test: tools lint test-go ## The whole test suite.

lint:
	$(GO) vet ./...
	$(GO) vet -tags faults ./app/internal/faults/
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	shellcheck $$(git ls-files '*.sh' .ci/run deploy/studio 2>/dev/null)
	@# edge/ui is build output committed so the edge and its image need no UI
	@# toolchain; it must be exactly what edge/scripts/build-ui.sh makes of edge/ui-src.
	@d=$$(mktemp -d) && edge/scripts/build-ui.sh edge/ui-src "$$d/ui" >/dev/null && \
	  diff -r edge/ui "$$d/ui" >/dev/null; rc=$$?; rm -rf "$$d"; \
	  if [ $$rc -ne 0 ]; then echo "edge/ui is stale: run edge/scripts/build-ui.sh"; exit 1; fi
	@# No secret in any commit (fake test credentials are allow-listed in .gitleaks.toml).
	gitleaks git --no-banner --redact --log-level warn .

test-go:
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) ./...

# -v: each scenario logs a RESULT line with what it measured (docs/faults.md).
test-faults: tools ## The fault suite: outages, restarts, reloads and abusive clients under load, through the edge.
	$(GO) test -tags faults -race -v -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) ./app/internal/faults/

bench: tools-bench ## Benchmarks; results go to docs/benchmarks.md by hand.
	deploy/scripts/bench.sh

test-containers: tools-containers ## Build the images and prove the compose stack in real containers.
	deploy/scripts/test-containers.sh

test-backup: tools-containers ## Prove backup, restore and the restore drill in real containers.
	deploy/scripts/test-backup.sh

test-security: tools-security ## gosec, govulncheck, gitleaks (history, images), TLS and HTTP/2 scans, live checks, fuzzing (docs/security.md).
	deploy/scripts/test-security.sh

test-deploy: tools-containers ## Prove deploy/studio deploy and rollback (zero downtime, automatic rollback) in real containers.
	deploy/scripts/test-deploy.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

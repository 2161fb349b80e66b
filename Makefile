# SMQ — every entry point a developer or CI needs.
# `make dev` runs SMQ on this machine with no set-up; `make test` runs every
# test (CI runs exactly that through .ci/run).

GO      ?= go
BIN     := bin/smq
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build dev test deps bench generate lint docker clean

all: build

## deps: install what the tests need from Debian's packages (PostgreSQL's server), if missing
deps:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL's server binaries"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "installing Chromium (test/browser opens the docs and the Temporal UI in it)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

## build: the smq binary in bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/smq

## dev: SMQ on embedded defaults: local PostgreSQL, embedded Temporal and its UI (:8233), the API and docs (:8080)
dev: deps build
	./$(BIN) dev

## test: vet and every test with -race, against a throwaway PostgreSQL (the fault suite in its
## short form among them), then each fuzz target for 20,000 inputs (about 5 s) from its committed corpus
test: deps
	./test/run-tests.sh
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

## bench: SMQ vs River vs a hand-written SKIP LOCKED queue on one throwaway PostgreSQL (about 20 min);
## writes test/bench/results.md and results.svg. SMQ_BENCH_STEPS=<regexp> runs only the matching steps.
bench: deps
	SMQ_BENCH=1 SMQ_BENCH_COMMAND="make bench" $(GO) test -run '^TestBench$$' -count=1 -timeout 45m -v ./test/bench/

## generate: re-create the committed OpenAPI document and the generated client
generate:
	$(GO) test ./api -run TestOpenAPI -update
	$(GO) generate ./api/client

## lint: gofmt and go vet
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

## docker: the container image (needs a Docker engine)
docker:
	docker build -f docker/Dockerfile --build-arg VERSION=$(VERSION) -t smq:$(VERSION) .

clean:
	rm -rf bin .smq

.PHONY: fuzz test-faults soak

# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report its own deadline as a failure ("context deadline exceeded", no
# crasher; golang/go#75804, fixed in Go 1.27). A count sets no deadline.
FUZZTIME ?= 50000x

## fuzz: every fuzz target of the repository (found by grep, so a new one
## is never left out) for FUZZTIME (50,000 inputs) each, from its committed seed corpus
fuzz:
	@for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h -o '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | sed 's/^func //'); do \
			echo "fuzz $$dir $$f"; \
			$(GO) test $$dir -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done

## test-faults: the full fault suite: node kill -9, PostgreSQL restart and a 30 s outage, Temporal restart,
## WAL disk full (needs root for a tmpfs), a vanished consumer, far schedules across restarts (about 6 min)
test-faults: deps
	SMQ_FAULTS=full $(GO) test ./test/faults -run . -count=1 -timeout 30m -v

## soak: 10 minutes of steady load with random faults; writes test/faults/soak-results.md (not in CI)
soak: deps
	SMQ_SOAK=1 $(GO) test ./test/faults -run '^TestSoak$$' -count=1 -timeout 30m -v

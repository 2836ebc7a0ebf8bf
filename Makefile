# Build, test, demo and benchmark the OpenSSH certificate authority suite.
GO      ?= go
BIN     := bin
# Every main package under cmd/ becomes bin/<name>.
CMDS    := $(notdir $(wildcard cmd/*))

.PHONY: all build test test-short lint bench demo demo-shell fuzz clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The whole suite: lint, then every test (integration tests run the real
# OpenSSH tools and oathtool; .ci/run installs them). Fuzz seeds run as
# ordinary tests.
test: lint
	$(GO) test -race -count=1 -timeout 12m ./...

test-short:
	$(GO) test -count=1 ./...

lint:
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$fmt" ]; then echo "gofmt needed on:"; echo "$$fmt"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Side-by-side issuance benchmark against the stock OpenSSH path
# (ssh-keygen -s); results are recorded in docs/BENCHMARKS.md.
bench:
	$(GO) run ./bench/cmd/cabench
	$(GO) run ./bench/cmd/authkeysbench

# Starts a CA in a temporary directory, adds a user and walks through
# sign-in and issuance; Ctrl-C stops it and removes everything.
demo: build
	@scripts/demo.sh

# Same, but leaves the CA running and prints commands to try by hand.
demo-shell: build
	@DEMO_SHELL=1 scripts/demo.sh

# Runs each fuzz target for FUZZTIME (default 20s).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)

# Build, test, demo and benchmark the OpenSSH certificate authority suite.
GO      ?= go
BIN     := bin
# Every main package under cmd/ becomes bin/<name>.
CMDS    := $(notdir $(wildcard cmd/*))

.PHONY: all build test test-short lint bench demo demo-shell fuzz clean

all: build

# sshd execs teleport-authkeys on every login: a static build starts
# 0.6-1.1 ms faster (no libc to load; see docs/BENCHMARKS.md).
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/teleport-authkeys

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
	$(GO) run ./bench/cmd/cabench -storage bolt,etcd
	$(GO) run ./bench/cmd/authkeysbench
	$(GO) run ./bench/cmd/proxybench

# Load test of issue 7 (bench/cmd/soak, docs/RELIABILITY.md "Load"): 500
# recorded PTY sessions through one proxy to 4 real sshd nodes for 10
# minutes, plus 10 certificates/s from the CA; checks every session and
# recording and that memory stays flat. About 15 minutes; root needed (it
# runs sshd). Not part of make test. SOAKFLAGS adds flags, e.g.
# SOAKFLAGS='-sessions 50 -duration 1m'.
SOAKFLAGS ?=
.PHONY: soak
soak:
	@[ "$$(id -u)" = 0 ] || { echo "make soak needs root: it runs sshd and logs in as root (sudo make soak)"; exit 1; }
	$(GO) run ./bench/cmd/soak $(SOAKFLAGS)

# The whole suite in a temporary directory (scripts/demo.sh): CA, proxy,
# two nodes (real sshds; root needed, sudo make demo), keyhelper sign-in
# with TOTP, ssh -J, a refused login, a recording played back; then it
# stops everything and removes the directory (also on Ctrl-C).
demo: build
	@scripts/demo.sh

# Same, but leaves it all running and prints the ssh commands to try by
# hand; Ctrl-C stops it and removes everything.
demo-shell: build
	@DEMO_SHELL=1 scripts/demo.sh

# Runs every fuzz target of every package, one after the other, for
# FUZZTIME each (default 20s), and stops at the first failure: a crash,
# or a package whose tests do not build (go test -list fails rather than
# listing nothing). A crasher lands in the package's testdata/fuzz/; keep
# it as a seed. FUZZFLAGS adds go test flags, e.g. FUZZFLAGS=-parallel=1
# on a shared machine.
FUZZTIME  ?= 20s
FUZZFLAGS ?=
fuzz:
	@list=$$($(GO) test -list '^Fuzz' ./...) || { printf '%s\n' "$$list"; exit 1; }; \
	targets=$$(printf '%s\n' "$$list" | awk '/^Fuzz/ { f[n++] = $$1; next } /^ok / { for (i = 0; i < n; i++) print $$2, f[i]; n = 0 }'); \
	[ -n "$$targets" ] || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	echo "fuzz: $$(printf '%s\n' "$$targets" | wc -l) targets, $(FUZZTIME) each"; \
	printf '%s\n' "$$targets" | while read -r pkg f; do \
	  echo "== $$pkg $$f"; \
	  out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg 2>&1 </dev/null); rc=$$?; \
	  printf '%s\n' "$$out" | grep -v '^fuzz: elapsed'; \
	  [ $$rc -eq 0 ] && continue; \
	  if printf '%s\n' "$$out" | grep -q '^    context deadline exceeded$$' && \
	     ! printf '%s\n' "$$out" | grep -q -e 'Failing input written' -e "^    --- FAIL: $$f/"; then \
	    echo "fuzz: $$f stopped by Go's -fuzztime race (go.dev/issue/75804), no failing input: not a crash"; \
	  else exit 1; fi; \
	done

clean:
	rm -rf $(BIN)

# Debian and RPM packages in $(DIST)/ (packaging/README.md): the binaries
# for linux/amd64 (cgo for NSS lookups; PIE with BIND_NOW; stripped) in
# $(DIST)/build, then go tool nfpm for each package and format. The
# version comes from git describe (packaging/version.sh); PKG_VERSION=1.2.3
# overrides it.
DIST        ?= dist
PKG_NAMES   := teleport-ca teleport-proxy teleport-node teleport-keyhelper
PKG_VERSION ?= $(shell packaging/version.sh)

.PHONY: packages packages-check
packages:
	rm -rf $(DIST)/build $(DIST)/*.deb $(DIST)/*.rpm
	mkdir -p $(DIST)/build
	CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -buildmode=pie -ldflags='-s -w -bindnow' -o $(DIST)/build/ ./cmd/...
	# teleport-authkeys, exec'd by sshd on every login, is linked statically:
	# it needs no NSS and starts about 1 ms sooner (docs/BENCHMARKS.md).
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags='-s -w' -o $(DIST)/build/ ./cmd/teleport-authkeys
	# Man pages from docs/reference.md (itself generated from --help).
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) $(GO) run ./packaging/genman -o $(DIST)/build/man docs/reference.md
	@v='$(PKG_VERSION)'; test -n "$$v" || { echo "packages: no version (packaging/version.sh failed)" >&2; exit 1; }; \
	for p in $(PKG_NAMES); do \
	  packaging/debian/changelog.sh $$p "$$v" > $(DIST)/build/$$p.changelog.gz || exit 1; \
	  for f in deb rpm; do \
	    VERSION="$$v" BUILD_DIR=$(DIST)/build SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) \
	      $(GO) tool nfpm package --config packaging/nfpm/$$p.yaml --packager $$f --target $(DIST)/ || exit 1; \
	  done; \
	done

# Builds the packages and checks them (packaging/packaging_test.go):
# contents, owners and modes, metadata, maintainer scripts, lintian,
# systemd-analyze verify, rpm -qlp.
packages-check:
	$(GO) test -count=1 -v ./packaging/

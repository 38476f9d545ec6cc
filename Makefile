# dsrd build, test and lab targets. `make test` is the test command the README
# and CI use: lint, unit tests with the race detector (privileged ones run in
# network namespaces, so run it as root), then the end-to-end tests inside the
# VM lab against real kernel IPVS.

GO       ?= go
PKG      := github.com/dsrd/dsrd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build test lint unit fuzz-short e2e e2e-cluster e2e-bgp chaos soak demo fuzz bench bench-bgp bench-admission clean packages packaging-test

all: build

## build: bin/dsrd, static (CGO_ENABLED=0), version stamped
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dsrd ./cmd/dsrd

## test: everything CI runs
test: lint unit fuzz-short e2e chaos packaging-test

## lint: gofmt and go vet (also with the vmtest tag, so VM-only files are checked)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags vmtest ./...
	$(GO) vet -tags vmtest,vmcluster ./tests/...
	$(GO) vet -tags vmtest,vmcluster,vmchaos ./tests/...
	$(GO) vet -tags vmbench ./tests/bench/...

## unit: unit tests with the race detector. DSRD_TEST_PRIVILEGED=require:
## a privileged test that lacks what it needs fails instead of skipping
## (CI runs this as root); run `go test ./...` directly to let them skip.
unit:
	DSRD_TEST_PRIVILEGED=require $(GO) test -race -count=1 ./...

## e2e: end-to-end tests in the VM lab (real IPVS, network namespaces as
## hosts), the dsrd cluster tests included, in one VM boot
e2e: build
	DSRD_VM_TIMEOUT=1800 DSRD_E2E_TAGS=vmtest,vmcluster tests/vm/e2e

## e2e-cluster: only the dsrd cluster end-to-end tests, TestClusterBGP
## included (about 4 to 5.5 minutes)
e2e-cluster: build
	DSRD_E2E_TAGS=vmtest,vmcluster DSRD_E2E_PKG=./tests/e2e tests/vm/e2e -test.run '^TestCluster'

## chaos: seeded schedules of faults against the lab cluster under a
## workload, their invariants checked (tests/e2e/chaos_test.go; about 10
## minutes in all). DSRD_CHAOS_SEEDS picks the schedules, one run each
## (make test runs three; empty: one from the time), DSRD_CHAOS_LENGTH
## each one's length (2m30s)
DSRD_CHAOS_SEEDS ?= 11 7 23
DSRD_CHAOS_LENGTH ?= 150s
chaos: build
	DSRD_CHAOS_SEEDS='$(DSRD_CHAOS_SEEDS)' DSRD_CHAOS_LENGTH=$(DSRD_CHAOS_LENGTH) DSRD_VM_TIMEOUT=1800 \
		DSRD_E2E_TAGS=vmtest,vmcluster,vmchaos DSRD_E2E_PKG=./tests/e2e tests/vm/e2e -test.run '^TestChaos$$'

## soak: one schedule of an hour of faults (after 5 minutes of warm-up
## under the workload) with the leak check, its report written into
## docs/reliability.md (about 70 minutes; not in make test).
## DSRD_SOAK_SEED picks the schedule, DSRD_SOAK_LENGTH the run's length
## (warm-up included)
DSRD_SOAK_SEED ?= 2026
DSRD_SOAK_LENGTH ?= 65m
soak: build
	DSRD_CHAOS_SOAK=1 DSRD_CHAOS_SEEDS='$(DSRD_SOAK_SEED)' DSRD_CHAOS_LENGTH=$(DSRD_SOAK_LENGTH) DSRD_CHAOS_REPORT=docs/reliability.md \
		DSRD_VM_TIMEOUT=5400 DSRD_E2E_TAGS=vmtest,vmcluster,vmchaos DSRD_E2E_PKG=./tests/e2e \
		tests/vm/e2e -test.run '^TestChaos$$' -test.timeout 85m

## e2e-bgp: only TestClusterBGP (two dsrd directors announcing a bgp VIP
## to the lab's BIRD router) and TestClusterBGPFRR (three directors, IPv4
## and IPv6 VIPs, FRR as the router); also part of e2e
e2e-bgp: build
	DSRD_E2E_TAGS=vmtest,vmcluster DSRD_E2E_PKG=./tests/e2e tests/vm/e2e -test.run '^TestClusterBGP(FRR)?$$'

## bench-bgp: the BGP scale-out benchmark in the VM lab (tests/bench/anycast/run,
## about 30 minutes; docs/benchmarks.md, "BGP scale-out"). Not in make test.
bench-bgp: build
	tests/bench/anycast/run

## bench-admission: admission control in the VM lab (tests/bench/admission):
## the time to replace the nftables table with 10,000 and 100,000 prefixes
## and the SYN path with and without it, then the same SYN flood with and
## without a service's rules (the legitimate client's success and latency,
## the VM's kernel CPU), as tables (docs/benchmarks.md, "Admission
## control"; a few minutes). Not in make test.
bench-admission: build
	DSRD_E2E_TAGS=vmbench DSRD_E2E_PKG=./tests/bench/admission tests/vm/e2e -test.run '^TestAdmission(Flood)?Bench$$'

## demo: the lab with a real cluster of directors, a witness and backends
demo: build
	tests/vm/demo

## packages: dist/ deb and rpm packages for amd64 and arm64 (packaging/build)
packages:
	VERSION=$(VERSION) COMMIT=$(COMMIT) packaging/build

## packaging-test: build the packages and test them (deb in a debootstrap
## root, rpm in an empty root, units under systemd-nspawn)
packaging-test:
	packaging/test

## fuzz: run every fuzz target for FUZZTIME each (default 30s); go test
## fuzzes one target per invocation. Every input from the network or disk:
## the configuration file, raft log entries, snapshots, raft RPCs, the Raft
## port's first bytes, peer protocol and local API request bodies, the BGP
## speaker's configuration (communities and every rule of Validate), the
## service keys of raft refs (ipvs.ParseServiceKey), keepalived.conf for
## dsrd config import keepalived (parser and translator); the admission
## prefix lists turned into interval ranges (FuzzSpans).
FUZZTIME ?= 30s
FUZZFLAGS ?=
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzRealserverAcceptImpliesConstruct$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzFSMApply$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft
	$(GO) test -run '^$$' -fuzz '^FuzzFSMRestore$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft
	$(GO) test -run '^$$' -fuzz '^FuzzRaftRPC$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeConfiguration$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft
	$(GO) test -run '^$$' -fuzz '^FuzzCheckAppendEntries$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft
	$(GO) test -run '^$$' -fuzz '^FuzzStreamFirstBytes$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft
	$(GO) test -run '^$$' -fuzz '^FuzzPeerRequests$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzLocalAPIRequests$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzIdentityOf$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./raft/pki
	$(GO) test -run '^$$' -fuzz '^FuzzParseCommunity$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./vrrp/bgp
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./vrrp/bgp
	$(GO) test -run '^$$' -fuzz '^FuzzParseServiceKey$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./ipvs
	$(GO) test -run '^$$' -fuzz '^FuzzParseSyncDaemon$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./ipvs
	$(GO) test -run '^$$' -fuzz '^FuzzImport$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/kaimport
	$(GO) test -run '^$$' -fuzz '^FuzzSpans$$' -fuzztime $(FUZZTIME) $(FUZZFLAGS) ./internal/admission

## fuzz-short: every fuzz target for 3,000 inputs, as CI runs them (about a
## minute with the builds); the seed corpora also run in unit, as plain
## tests. Counts, not durations: a duration ending while go test minimizes
## an input could fail the run for nothing (seen under load).
fuzz-short:
	$(MAKE) fuzz FUZZTIME=3000x FUZZFLAGS='-fuzzminimizetime 100x'

clean:
	rm -rf bin dist

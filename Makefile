# berth — see README.md. Tools are pinned in tools/go.mod and run with `go tool`.
GO        ?= go
BIN       ?= bin
DATA_DIR  ?= .berth-dev
BUF       := $(GO) tool -modfile=tools/go.mod buf
GOFLAGS_TEST ?= -race -count=1 -timeout 25m

.PHONY: all build run deps test test-short fuzz chaos generate check-generate lint bench clean proto-release

all: build

# What --version prints: module version, commit and build date, stamped at link time.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS_VERSION := -X github.com/berth-dev/berth/internal/buildinfo.version=$(VERSION) \
	-X github.com/berth-dev/berth/internal/buildinfo.commit=$(COMMIT) \
	-X github.com/berth-dev/berth/internal/buildinfo.date=$(BUILD_DATE)

## build: static, CGO-free binaries in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS_VERSION)' -o $(BIN)/ ./cmd/...

## run: berthd dev — every service in one process on embedded SQLite
run: build
	$(BIN)/berthd dev --data-dir $(DATA_DIR)

## deps: check for every tool the tests need and apt-install what is missing
## (tools/provision.sh; installing needs root)
deps:
	tools/provision.sh

## test: every test, PostgreSQL ones on a throwaway real server; every fuzz
## target briefly; the Compose deployment on the local Docker engine (a
## missing engine is a failure)
test: deps
	$(GO) test $(GOFLAGS_TEST) ./...
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory compose-test

## fuzz: every Fuzz* target in the module, found by go test -list, for
## FUZZTIME each (scaled down to keep all of them within FUZZ_BUDGET seconds)
FUZZTIME    ?= 5s
FUZZ_BUDGET ?= 120
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZ_BUDGET=$(FUZZ_BUDGET) tools/fuzz.sh

## chaos: the fault test at full size (tests/chaos): PostgreSQL, two
## berthd serve replicas of every service, storms of CHAOS_NODES agents
## (berth-loadgen) registering and resuming while each replica is killed
## (-9) and restarted, PostgreSQL restarts or is down for the first 30 s,
## and the database's disk (a tmpfs; needs root) fills; prints the fault
## matrix. make test runs it at its default size (BERTH_CHAOS_NODES=100).
CHAOS_NODES ?= 1000
chaos: deps
	BERTH_CHAOS_NODES=$(CHAOS_NODES) $(GO) test -count=1 -v -timeout 90m ./tests/chaos/

## generate: regenerate the protobuf Go code, the REST gateway and the
## OpenAPI document (internal/gateway) with the pinned local plugins; the
## document then gets the long poll of GET /v1/events, which no proto says
## (internal/gateway/openapigen)
generate:
	$(BUF) generate
	$(GO) run ./internal/gateway/openapigen internal/gateway/openapi.swagger.json

## proto-release: snapshot the protos as released; make lint's buf breaking
## compares every later change with this image (committed, so that the
## check works offline on a fresh clone)
PROTO_RELEASED := proto/released/v1.binpb
proto-release:
	$(BUF) build --exclude-source-info -o $(PROTO_RELEASED)

## check-generate: fail if the committed generated code is stale
check-generate: generate
	git diff --exit-code -- proto/ internal/gateway/openapi.swagger.json

## lint: buf lint, buf breaking against the released protos, gofmt and go vet
lint:
	$(BUF) lint
	$(BUF) breaking --against $(PROTO_RELEASED)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: the power-restore load harness (bench/run.sh): a throwaway PostgreSQL,
## the four services as separate processes, berth-loadgen ceiling, grpc-floor,
## boot-floor, register-floor,
## register, register-dev, stepca-sign (step-ca v0.30.2, pinned in
## bench/stepca/go.mod, as the yardstick of register), storm, restore (the
## registration service restarted, then the storm again), heartbeat and
## stream-floor; each scenario the report compares runs right after a 3 s
## ceiling of its own (BENCH_NODES=2000, BENCH_PROBE_DURATION=3s,
## BENCH_HB_NODES...); writes bench-results.json
bench:
	GO=$(GO) bench/run.sh

clean:
	rm -rf $(BIN) $(DATA_DIR)

# ---- Docker images and the Compose deployment (deploy/) ----
IMAGE          ?= berth:dev
POSTGRES_IMAGE ?= berth-postgres:15
IMAGE_CONTEXT  := $(BIN)/image-context
# The PKI's role directories, each a volume of its own in deploy/compose.yaml.
PKI_ROLES      := root ca registration bundles heartbeat api admin

.PHONY: images image postgres-image compose-config compose-test docker-engine

## images: the berth image and the local PostgreSQL image, both without pulling
images: image postgres-image

## image: $(IMAGE), FROM scratch, with the CGO-free binaries built here
image:
	rm -rf $(IMAGE_CONTEXT)
	mkdir -p $(IMAGE_CONTEXT)/bin $(IMAGE_CONTEXT)/rootfs/etc/ssl/certs $(IMAGE_CONTEXT)/rootfs/tmp \
		$(IMAGE_CONTEXT)/rootfs/var/lib $(IMAGE_CONTEXT)/state/berth/node \
		$(addprefix $(IMAGE_CONTEXT)/state/berth/pki/,$(PKI_ROLES))
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w $(LDFLAGS_VERSION)' -o $(IMAGE_CONTEXT)/bin/ \
		./cmd/... ./deploy/berth-demo-provision
	cp deploy/image/etc/passwd deploy/image/etc/group $(IMAGE_CONTEXT)/rootfs/etc/
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CONTEXT)/rootfs/etc/ssl/certs/
	chmod 1777 $(IMAGE_CONTEXT)/rootfs/tmp
	chmod 0755 $(IMAGE_CONTEXT)/rootfs/var $(IMAGE_CONTEXT)/rootfs/var/lib $(IMAGE_CONTEXT)/state/berth
	chmod 0700 $(IMAGE_CONTEXT)/state/berth/pki $(IMAGE_CONTEXT)/state/berth/node \
		$(addprefix $(IMAGE_CONTEXT)/state/berth/pki/,$(PKI_ROLES))
	@old=$$(docker image inspect -f '{{.Id}}' $(IMAGE) 2>/dev/null); \
	echo "docker build -f deploy/Dockerfile -t $(IMAGE) $(IMAGE_CONTEXT)"; \
	if ! docker build -q -f deploy/Dockerfile -t $(IMAGE) $(IMAGE_CONTEXT) >$(BIN)/image-build.log 2>&1; then \
		cat $(BIN)/image-build.log; exit 1; fi; \
	new=$$(docker image inspect -f '{{.Id}}' $(IMAGE)) || exit 1; \
	if [ -n "$$old" ] && [ "$$old" != "$$new" ]; then docker rmi $$old >/dev/null 2>&1 || true; fi; \
	docker image inspect -f '$(IMAGE): {{.Size}} bytes' $(IMAGE)

## postgres-image: $(POSTGRES_IMAGE), FROM scratch, from the PostgreSQL server
## binaries installed on this host (cached by a hash of its recipe)
postgres-image:
	GO=$(GO) deploy/postgres/build-image.sh $(POSTGRES_IMAGE)

## compose-config: deploy/compose.yaml loads with Compose v2's own loader
## (compose-go) and with every compose command installed here (v1 or v2)
compose-config:
	$(GO) tool -modfile=tools/go.mod github.com/compose-spec/compose-go/v2/cmd deploy/compose.yaml >/dev/null
	@if docker compose version >/dev/null 2>&1; then echo "docker compose config"; \
		docker compose -f deploy/compose.yaml --profile demo --profile tools config -q; fi
	@if command -v docker-compose >/dev/null 2>&1; then echo "docker-compose config"; \
		docker-compose -f deploy/compose.yaml --profile demo --profile tools config -q; fi

docker-engine:
	@docker info >/dev/null 2>&1 || { echo "no Docker engine answers (docker info failed): the Compose test needs one"; exit 1; }

## compose-test: deploy/compose.yaml on the local Docker engine, end to end
## (a few minutes); a missing engine or compose command is a failure
compose-test: deps docker-engine compose-config images
	BERTH_IMAGE=$(IMAGE) BERTH_POSTGRES_IMAGE=$(POSTGRES_IMAGE) \
		$(GO) test -tags compose -count=1 -v -timeout 30m ./tests/compose/

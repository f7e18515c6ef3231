# berth — see README.md. Tools are pinned in tools/go.mod and run with `go tool`.
GO        ?= go
BIN       ?= bin
DATA_DIR  ?= .berth-dev
BUF       := $(GO) tool -modfile=tools/go.mod buf
GOFLAGS_TEST ?= -race -count=1 -timeout 25m

.PHONY: all build run test test-short generate check-generate lint bench clean

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

## test: every test, PostgreSQL ones on a throwaway real server; the Compose
## deployment too when a Docker engine answers (under CI=true it must)
test:
	$(GO) test $(GOFLAGS_TEST) ./...
	@if [ "$$CI" = true ] || docker info >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory compose-test; \
	else echo "make test: no Docker engine answers; skipping compose-test (run it with make compose-test)"; fi

## generate: regenerate the protobuf Go code with the pinned local plugins
generate:
	$(BUF) generate

## check-generate: fail if the committed generated code is stale
check-generate: generate
	git diff --exit-code -- proto/

## lint: buf lint, gofmt and go vet
lint:
	$(BUF) lint
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: the power-restore load harness (bench/run.sh): a throwaway PostgreSQL,
## the four services as separate processes, berth-loadgen ceiling, register,
## storm and heartbeat (BENCH_NODES=2000, BENCH_HB_NODES...); writes bench-results.json
bench:
	GO=$(GO) bench/run.sh

clean:
	rm -rf $(BIN) $(DATA_DIR)

# ---- Docker images and the Compose deployment (deploy/) ----
IMAGE          ?= berth:dev
POSTGRES_IMAGE ?= berth-postgres:15
IMAGE_CONTEXT  := $(BIN)/image-context

.PHONY: images image postgres-image compose-test

## images: the berth image and the local PostgreSQL image, both without pulling
images: image postgres-image

## image: $(IMAGE), FROM scratch, with the CGO-free binaries built here
image:
	rm -rf $(IMAGE_CONTEXT)
	mkdir -p $(IMAGE_CONTEXT)/bin $(IMAGE_CONTEXT)/rootfs/etc/ssl/certs $(IMAGE_CONTEXT)/rootfs/tmp \
		$(IMAGE_CONTEXT)/rootfs/var/lib $(IMAGE_CONTEXT)/state/berth/pki $(IMAGE_CONTEXT)/state/berth/node
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w $(LDFLAGS_VERSION)' -o $(IMAGE_CONTEXT)/bin/ \
		./cmd/... ./deploy/berth-demo-provision
	cp deploy/image/etc/passwd deploy/image/etc/group $(IMAGE_CONTEXT)/rootfs/etc/
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CONTEXT)/rootfs/etc/ssl/certs/
	chmod 1777 $(IMAGE_CONTEXT)/rootfs/tmp
	chmod 0755 $(IMAGE_CONTEXT)/rootfs/var $(IMAGE_CONTEXT)/rootfs/var/lib $(IMAGE_CONTEXT)/state/berth
	chmod 0700 $(IMAGE_CONTEXT)/state/berth/pki $(IMAGE_CONTEXT)/state/berth/node
	@old=$$(docker image inspect -f '{{.Id}}' $(IMAGE) 2>/dev/null); \
	echo "docker build -f deploy/Dockerfile -t $(IMAGE) $(IMAGE_CONTEXT)"; \
	if ! docker build -q -f deploy/Dockerfile -t $(IMAGE) $(IMAGE_CONTEXT) >$(BIN)/image-build.log 2>&1; then \
		cat $(BIN)/image-build.log; exit 1; fi; \
	new=$$(docker image inspect -f '{{.Id}}' $(IMAGE)) || exit 1; \
	if [ -n "$$old" ] && [ "$$old" != "$$new" ]; then docker rmi $$old >/dev/null 2>&1 || true; fi; \
	docker image inspect -f '$(IMAGE): {{.Size}} bytes' $(IMAGE)

## postgres-image: $(POSTGRES_IMAGE) from debootstrap and Debian's postgresql (cached; needs root)
postgres-image:
	deploy/postgres/build-image.sh $(POSTGRES_IMAGE)

## compose-test: deploy/compose.yaml on the local Docker engine, end to end (about a minute)
## (without a Docker engine the test skips; under CI=true it fails)
compose-test:
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory images; fi
	BERTH_IMAGE=$(IMAGE) BERTH_POSTGRES_IMAGE=$(POSTGRES_IMAGE) \
		$(GO) test -tags compose -count=1 -v -timeout 30m ./tests/compose/

# berth — see README.md. Tools are pinned in tools/go.mod and run with `go tool`.
GO        ?= go
BIN       ?= bin
DATA_DIR  ?= .berth-dev
BUF       := $(GO) tool -modfile=tools/go.mod buf
GOFLAGS_TEST ?= -race -count=1 -timeout 25m

.PHONY: all build run test test-short generate check-generate lint bench clean

all: build

## build: static, CGO-free binaries in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## run: berthd dev — every service in one process on embedded SQLite
run: build
	$(BIN)/berthd dev --data-dir $(DATA_DIR)

## test: every test, PostgreSQL ones on a throwaway real server
test:
	$(GO) test $(GOFLAGS_TEST) ./...

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

## bench: store and service benchmarks (Resume latency, flat with 100k nodes)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/store/regstore/ ./services/registration/

clean:
	rm -rf $(BIN) $(DATA_DIR)

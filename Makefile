# Code generation with pinned tools. Users never need these: generated code in api/ is committed.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION       := v2.33.0
STATICCHECK_VERSION        := v0.8.2

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

# Release builds: static binaries (CGO_ENABLED=0, -trimpath) named for the
# version, which `cairn version` prints with the commit; git describe names
# it unless VERSION is given (make release VERSION=v1.2.0).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
PLATFORMS := linux/amd64 linux/arm64

.PHONY: tools generate check-generated lint test release

tools:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)

# generate lints proto/ and regenerates api/ byte-identically from it.
generate:
	buf lint
	buf generate

# check-generated fails when api/ differs from what proto/ generates.
check-generated: generate
	git diff --exit-code -- api/
	test -z "$$(git status --porcelain -- api/)"

lint:
	test -z "$$(gofmt -l .)"
	go vet ./...
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(BIN)/staticcheck ./...

test:
	go test ./...

# release builds dist/cairn-$(VERSION)-<os>-<arch> for every platform and
# dist/SHA256SUMS (check with: cd dist && sha256sum -c SHA256SUMS).
release:
	rm -rf dist && mkdir -p dist
	for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "building dist/cairn-$(VERSION)-$$os-$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath \
			-ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
			-o dist/cairn-$(VERSION)-$$os-$$arch ./cmd/cairn || exit 1; \
	done
	cd dist && sha256sum cairn-* > SHA256SUMS && cat SHA256SUMS

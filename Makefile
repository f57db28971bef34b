# otaport: the two commands of the quick start are `make demo` and `make test`.
GO ?= go
BIN ?= bin

.PHONY: all build generate test vet lint demo clean bench sequences

all: build

# Regenerate every port of the catalog. Hand-written driver.go files are kept.
generate:
	$(GO) run ./cmd/otagen boards.yaml

# otagen, otarun, otaimg, otaserve and every port plugin as bin/otaport-<board>,
# and the C port's plugin of every board as bin/otaport-<board>-c: one program
# (ports/cport/cmd/otaport-c) that takes its board from its name.
build:
	$(GO) build -o $(BIN)/ ./cmd/... ./ports/...
	@for h in ports/*/c/ota_board.h; do b=$${h#ports/}; b=$${b%%/*}; cp $(BIN)/otaport-c $(BIN)/otaport-$$b-c || exit 1; done

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# The whole test suite: formatting, vet, staticcheck, then every test with the
# race detector.
# Generated-code freshness is a test (ports/all): a committed port that differs
# from what otagen produces fails it.
test: lint
	$(GO) test -race -count=1 ./...

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# The sequence tester in full mode: a million random steps over every
# catalog board, checked against the reference model (tests/sequences).
sequences:
	OTAPORT_SEQUENCES=full $(GO) test -count=1 -timeout 60m -run '^TestSequences$$' -v ./tests/sequences/

demo: build
	./scripts/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./core/hal/plugin/

clean:
	rm -rf $(BIN)

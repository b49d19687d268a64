# bpf-exporter: the two commands of the README, and what they need.
#   sudo make run    install build dependencies, build, run on the embedded configs
#   sudo make test   install build dependencies, run every test (real kernel)

CARGO ?= cargo
ARGS ?=
# Debian/Ubuntu packages the build and the tests need: clang compiles the BPF
# programs, libelf/zlib/pkg-config build libbpf, bpftool regenerates
# vmlinux.h, prometheus provides promtool for exposition checks, pci.ids is
# the database the pci_* decoders read.
PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config make bpftool prometheus pci.ids

.PHONY: deps build run test lint

deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	$(CARGO) build --release --locked

run: build
	./target/release/bpf-exporter $(ARGS)

test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked -- --test-threads=2

# bpf-exporter: the two commands of the README, and what they need.
#   sudo make run    install build dependencies, build, run on the embedded configs
#   sudo make test   install build dependencies, run every test (real kernel)
#   make fuzz        run every cargo-fuzz target for FUZZ_SECONDS each (nightly)

CARGO ?= cargo
ARGS ?=
FUZZ_SECONDS ?= 60
# Debian/Ubuntu packages the build and the tests need: clang compiles the BPF
# programs, libelf/zlib/pkg-config build libbpf, bpftool regenerates
# vmlinux.h, prometheus provides promtool (exposition and rule checks) and
# the server the end-to-end dashboard test runs, pci.ids is the database the
# pci_* decoders read, systemd provides systemd-analyze (the unit checks of
# packaging/systemd/) and systemd-socket-activate, openssl and curl make
# and speak to the TLS endpoint of the web tests, systemtap-sdt-dev has the
# <sys/sdt.h> of the USDT test target (tests/target/usdt_target.c).
PACKAGES := clang llvm libelf-dev zlib1g-dev pkg-config make bpftool prometheus pci.ids systemd openssl curl \
	systemtap-sdt-dev
# Checks packaging/kubernetes/ offline (from PyPI; pinned, as its schemas
# follow its version).
KUBERNETES_VALIDATE := 1.37.0

.PHONY: deps build run test lint fuzz

deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@kubernetes-validate --version 2>/dev/null | grep -qx '$(KUBERNETES_VALIDATE)' || \
		python3 -m pip install --quiet 'kubernetes-validate==$(KUBERNETES_VALIDATE)'

build: deps
	$(CARGO) build --release --locked

# A fully static binary at dist/bpf-exporter, stripped: the `static` feature
# links libbpf, libelf and zlib in, crt-static links glibc in. `cargo rustc`
# gives crt-static to the final link only, as build scripts and proc-macros
# cannot be static, and reuses the dependencies `make build` compiled.
# libbpf-sys looks for the static archives only where LIBBPF_SYS_LIBRARY_PATH
# says.
STATIC_RUSTC = LIBBPF_SYS_LIBRARY_PATH=$$(pkg-config --variable=libdir libelf) $(CARGO) rustc --locked --features static --bin bpf-exporter
STATIC_FLAGS = -C target-feature=+crt-static -C strip=symbols
.PHONY: dist
dist: deps
	$(STATIC_RUSTC) --release -- $(STATIC_FLAGS)
	mkdir -p dist
	cp target/release/bpf-exporter dist/bpf-exporter
	@stat -c '%n: %s bytes' dist/bpf-exporter

run: build
	./target/release/bpf-exporter $(ARGS)

# The static-binary test runs a debug build of the same static link (the
# release one of `make dist` takes minutes), copied out as the next build
# of the tests relinks target/debug/bpf-exporter dynamically.
test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(STATIC_RUSTC) -- -C target-feature=+crt-static
	mkdir -p target/static
	cp target/debug/bpf-exporter target/static/bpf-exporter
	BPF_EXPORTER_STATIC_BINARY=$(CURDIR)/target/static/bpf-exporter $(CARGO) test --locked -- --test-threads=2

# Not part of `test`: it needs the nightly toolchain and takes FUZZ_SECONDS
# per target. Each target keeps its corpus in fuzz/corpus/<target> (not
# committed); `config` also starts from the files of configs/. A target's
# libFuzzer dictionary, if any, is fuzz/dict/<target>.dict. A crash stops
# the run and leaves the input in fuzz/artifacts/<target>/.
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@set -e; for target in $$($(CARGO) +nightly fuzz list); do \
		mkdir -p fuzz/corpus/$$target; \
		seeds=""; if [ $$target = config ]; then seeds=configs; fi; \
		dict=""; if [ -f fuzz/dict/$$target.dict ]; then dict=-dict=fuzz/dict/$$target.dict; fi; \
		echo "fuzzing $$target for $(FUZZ_SECONDS)s"; \
		$(CARGO) +nightly fuzz run $$target fuzz/corpus/$$target $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict; \
	done

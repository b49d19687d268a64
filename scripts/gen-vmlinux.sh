#!/usr/bin/env bash
# Regenerates bpf/include/vmlinux/<arch>/vmlinux.h from the running kernel's
# BTF. Run it on a machine of the target architecture (needs bpftool and
# /sys/kernel/btf/vmlinux), then commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -m)" in
  x86_64) arch=x86 ;;
  aarch64) arch=arm64 ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
btf=${1:-/sys/kernel/btf/vmlinux}
[ -r "$btf" ] || { echo "no BTF at $btf: the kernel needs CONFIG_DEBUG_INFO_BTF=y" >&2; exit 1; }
command -v bpftool >/dev/null || { echo "bpftool not found: apt-get install bpftool" >&2; exit 1; }
mkdir -p "bpf/include/vmlinux/$arch"
bpftool btf dump file "$btf" format c > "bpf/include/vmlinux/$arch/vmlinux.h"
echo "wrote bpf/include/vmlinux/$arch/vmlinux.h ($(wc -l < "bpf/include/vmlinux/$arch/vmlinux.h") lines)"

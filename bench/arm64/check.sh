#!/usr/bin/env bash
# Runs cwa built for linux-arm64 under QEMU user-mode emulation on an x86-64 Debian machine and checks that its
# ranking equals the native run's: the ARM64 code paths (the 128-bit NEON SGEMM kernel, 128-bit bf16 widening and
# NaN scans) are otherwise never executed by CI. Emulation says nothing about ARM speed, only about correctness.
# Needs root for apt (QEMU and the arm64 C libraries) the first time. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${ARM64_CHECK_DIR:-$(mktemp -d)}
if ! command -v qemu-aarch64-static >/dev/null || [ ! -e /lib/ld-linux-aarch64.so.1 ] || [ ! -e /usr/lib/aarch64-linux-gnu/libssl.so.3 ]; then
  dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static \
    libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64 zlib1g:arm64 libssl3:arm64 libfontconfig1:arm64
fi
dotnet build src/Cwa.Cli -c Release --nologo -v quiet
dotnet publish src/Cwa.Cli -c Release -r linux-arm64 --self-contained -o .arm64 --nologo -v quiet
native="dotnet src/Cwa.Cli/bin/Release/net10.0/cwa.dll"
# The emulated .NET runtime needs no ICU and no write-xor-execute remapping (QEMU handles the latter badly).
arm() { DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_EnableWriteXorExecute=0 qemu-aarch64-static .arm64/cwa "$@"; }
arm --version
# bf16 weights, so that the streamed run's products read them as mapped (widened per panel while packing).
$native create-test-model --preset small --dtype bf16 --out "$work/model" --quiet
args=(analyze --model "$work/model" --max-samples 8 --max-length 64 --topk 50 --save-plots false --quiet)
status=0
for streaming in off on; do
  $native "${args[@]}" --streaming "$streaming" --out-dir "$work/x64-$streaming"
  arm "${args[@]}" --streaming "$streaming" --out-dir "$work/arm64-$streaming"
  grep -o '"sgemm_kernel": *"[a-z0-9]*"' "$work/arm64-$streaming/experiment_manifest.json"
  line=$($native compare "$work/x64-$streaming" "$work/arm64-$streaming" --out "$work/compare-$streaming" | head -1)
  echo "streaming $streaming: $line"
  case "$line" in *"Jaccard 1.000"*) ;; *) status=1 ;; esac
done
[ "$status" = 0 ] && echo "arm64 (emulated) ranked the same weights as x86-64: ok" || echo "arm64 (emulated) ranking differs from x86-64"
exit "$status"

#!/usr/bin/env bash
# Fuzz every target under fuzz/ for SECONDS each (default 60); exit non-zero if any crashes.
# Usage: scripts/fuzz.sh [seconds] [target…]
#
# Targets: job_parse (job::parse), receipt_meta / receipt_waspy / receipt_whaapy /
# receipt_wazzup / receipt_seven (each gateway's receipt parser, in
# src/gateways/<name>/webhook.rs), receipt_verify (webhook authentication with arbitrary
# headers, for every provider). Seeds are in fuzz/corpus/<target> and stay untouched: what
# the fuzzer finds goes to fuzz/target/corpus/<target>, crashes to fuzz/artifacts/<target>/
# (reproduce one with `cargo +nightly fuzz run <target> <file>`).
#
# Needs cargo-fuzz (installed from crates.io when missing) and a nightly toolchain; without
# one, stable is asked to accept the nightly flags (RUSTC_BOOTSTRAP=1). The sanitizer is
# `none` by default (the code is safe Rust; panics, overflows and debug assertions are what
# is hunted, and uninstrumented runs get further in a short budget); FUZZ_SANITIZER=address
# turns AddressSanitizer on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(job_parse receipt_meta receipt_waspy receipt_whaapy receipt_wazzup receipt_seven receipt_verify)
fi
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# The main crate's CARGO_TARGET_DIR (shared builds) must not receive instrumented artifacts.
unset CARGO_TARGET_DIR

# -a: debug assertions and overflow checks, so arithmetic overflow is a crash too.
"${fuzz[@]}" build -s "$sanitizer" -a

failed=()
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  mkdir -p "fuzz/target/corpus/$target"
  if ! "${fuzz[@]}" run -s "$sanitizer" -a "$target" "fuzz/target/corpus/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing: no crash in ${#targets[@]} targets (${seconds}s each)"

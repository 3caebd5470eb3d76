#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) from its corpus. CI runs a
# short pass; run it for hours by hand. Inputs that crash are saved by
# libFuzzer under fuzz/artifacts/; copy them into fuzz/corpus/TARGET/ so the
# regression test (server/tests/fuzz_corpus.rs) keeps them fixed.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(frame_decoder log_replay server_input)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# cargo fuzz passes -Z flags (sanitizers) to rustc; this lets the stable
# toolchain accept them.
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  work="$(mktemp -d)"
  log="$work/fuzz.log"
  echo "== fuzz $target for ${seconds}s"
  status=0
  cargo fuzz run -O "$target" "$work" "corpus/$target" -- -max_total_time="$seconds" >"$log" 2>&1 || status=$?
  grep -E "^(Done|==[0-9]+==|SUMMARY|thread '|panicked)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz: $target failed (exit $status); the input is under fuzz/artifacts/$target/"
    exit "$status"
  fi
  rm -rf "$work"
done

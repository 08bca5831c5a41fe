#!/usr/bin/env bash
# Fuzzes Roster's pure parsers with cargo-fuzz (libFuzzer, nightly): filter_parse, patch_path,
# patch_apply, resource_parse, event_decode (fuzz/fuzz_targets).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     # CI: scripts/fuzz.sh 10; `make fuzz`: 300
#
# The committed seeds in fuzz/corpus/<target> are read, never written: what libFuzzer discovers
# goes to $FUZZ_WORK_DIR/<target> (kept between local runs, so longer runs build on earlier ones).
# A crash stops the script with a non-zero status; the input is in fuzz/artifacts/<target>/ and
# must become a regression test in the crate that failed (docs/security.md, "Fuzzing").
#
# Environment:
#   FUZZ_TARGET_DIR  build directory (default ~/.cache/roster-fuzz-target, separate from the
#                    main one so fuzz builds never invalidate it)
#   FUZZ_WORK_DIR    discovered corpus (default ~/.cache/roster-fuzz-corpus)
#   FUZZ_SANITIZER   none (default: our crates forbid unsafe code) or address
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
shift || true
all_targets=(filter_parse patch_path patch_apply resource_parse event_decode)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/roster-fuzz-target}"
work_dir="${FUZZ_WORK_DIR:-$HOME/.cache/roster-fuzz-corpus}"
sanitizer="${FUZZ_SANITIZER:-none}"

SECONDS=0
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (once; cached in the cargo home)"
  cargo install cargo-fuzz --locked
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain (libFuzzer instrumentation needs it)"
  rustup toolchain install nightly --profile minimal
fi
echo "fuzz: tools ready after ${SECONDS}s"

# One build for every target, with debug assertions so integer overflows panic too.
SECONDS=0
cargo +nightly fuzz build --debug-assertions --sanitizer "$sanitizer" --target-dir "$target_dir"
echo "fuzz: build done in ${SECONDS}s"

total=0
for t in "${targets[@]}"; do
  mkdir -p "$work_dir/$t"
  SECONDS=0
  log="$work_dir/$t.log"
  # -timeout: an input that takes longer than 10 s is a hang, which counts as a crash.
  status=0
  cargo +nightly fuzz run --debug-assertions --sanitizer "$sanitizer" --target-dir "$target_dir" \
    "$t" "$work_dir/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  total=$((total + SECONDS))
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (exit $status); the crashing input is under fuzz/artifacts/$t/ (full log: $log)" >&2
    exit "$status"
  fi
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  echo "fuzz: $t ran ${seconds}s without a crash (${SECONDS}s wall)"
done
echo "fuzz: all ${#targets[@]} targets passed (${total}s of fuzzing)"

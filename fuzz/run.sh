#!/usr/bin/env bash
# Build the fuzz targets and run each for a bounded time from the committed seeds (fuzz/seeds/<target>) plus the
# local corpus it grows (fuzz/corpus/<target>, not committed).
#
#   fuzz/run.sh                        # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh jmespath kyverno_pattern
#   FUZZ_RUNS=1000000 fuzz/run.sh      # a number of executions instead of a time
#
# Works on the stable toolchain: cargo-fuzz passes unstable -Z flags to rustc, which RUSTC_BOOTSTRAP=1 allows; no
# sanitizer (`--sanitizer none`: the targets are safe Rust, and what we look for are panics, overflows (debug
# assertions are on), hangs and runaway memory). A crash leaves its input in fuzz/artifacts/<target>/ and fails.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
export RUSTC_BOOTSTRAP=1

all=(admission_decode policy_loader rego_loader kyverno_pattern kyverno_variables jmespath template_agreement)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
seconds="${FUZZ_SECONDS:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

flags=(--sanitizer none --debug-assertions)
echo "== cargo fuzz build"
cargo fuzz build "${flags[@]}"

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  if [ -n "${FUZZ_RUNS:-}" ]; then
    limit=(-runs="$FUZZ_RUNS")
    label="$FUZZ_RUNS runs"
  else
    limit=(-max_total_time="$seconds")
    label="$seconds s"
  fi
  echo "== fuzz $target ($label)"
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb: a bound on memory (libFuzzer's default is 2 GB).
  log="corpus/$target.log"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    "${limit[@]}" -timeout=10 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  # libFuzzer's progress lines stay in the log; the summary and any crash report are shown.
  grep -aE '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done [0-9]+ runs)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz target $target failed (status $status; the input is in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
done

#!/usr/bin/env bash
# Fuzzes KeyGuard's parsers of untrusted input with cargo-fuzz (libFuzzer): the kg-v1 headers
# and canonical string, the enrollment body, and the usage tap that reads provider answers.
#
#   scripts/fuzz.sh                 short run of every target (what CI runs; ~25 s each)
#   scripts/fuzz.sh long [TARGET]   10 million executions of each target (or of TARGET)
#   scripts/fuzz.sh cmin [TARGET]   folds what long runs found into the committed corpus, minimised
#   scripts/fuzz.sh build           only builds the targets
#
# FUZZ_SECONDS and FUZZ_RUNS override the short run's time and the long run's execution count,
# FUZZ_TOOLCHAIN (e.g. `stable`) the toolchain.
# Uses a nightly toolchain when one is installed, stable otherwise: without a sanitizer, cargo-fuzz
# passes only stable `-C` flags (sancov instrumentation, debug assertions), so both work. The
# sanitizer stays off on both, for one behaviour everywhere: these targets are safe Rust, where
# panics, overflow checks and the targets' assertions find the bugs (AddressSanitizer, which needs
# nightly's -Zsanitizer, mostly helps with `unsafe` code).
# Honours CARGO_TARGET_DIR. New inputs found by a short run go to a temporary directory and those
# of a long run under the target directory, so the committed corpus only changes through `cmin`.
# A crash is saved under fuzz/artifacts/<target>/ and replays with `cargo fuzz run TARGET FILE`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CARGO_FUZZ_VERSION="0.13.2"
FUZZ_DIR="$ROOT/fuzz"
MODE=${1:-short}
ONLY=${2:-}

ensure_cargo
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
  say "Installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io (about 2 minutes, once)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The fuzz crate is built without the workspace's dashboard flags.
unset RUSTFLAGS
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  TOOLCHAIN=("+$FUZZ_TOOLCHAIN")
  say "Fuzzing with the $FUZZ_TOOLCHAIN toolchain"
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN=(+nightly)
  say "Fuzzing with the nightly toolchain"
else
  TOOLCHAIN=()
  say "No nightly toolchain: fuzzing on the default (stable) toolchain"
fi
BUILD_FLAGS=(--sanitizer none)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then BUILD_FLAGS+=(--target-dir "$CARGO_TARGET_DIR"); fi

cd "$FUZZ_DIR"
mapfile -t TARGETS < <(cargo "${TOOLCHAIN[@]}" fuzz list)
if [ -n "$ONLY" ]; then TARGETS=("$ONLY"); fi

say "Building the fuzz targets: ${TARGETS[*]}"
cargo "${TOOLCHAIN[@]}" fuzz build "${BUILD_FLAGS[@]}" $ONLY

# Where a long run keeps what it found, for `cmin` to fold into the committed corpus.
found_dir() { echo "$(target_dir)/fuzz-found/$1"; }

run() { # target, directory for new inputs, then libFuzzer options
  local target=$1 work=$2
  shift 2
  mkdir -p "$work"
  local dirs=("$work" "corpus/$target")
  [ -d "seeds/$target" ] && dirs+=("seeds/$target")
  say "Fuzzing $target $*"
  cargo "${TOOLCHAIN[@]}" fuzz run "${BUILD_FLAGS[@]}" "$target" "${dirs[@]}" -- \
    -dict="dict/$target.dict" -print_final_stats=1 "$@"
}

case "$MODE" in
  build) ;;
  short)
    for target in "${TARGETS[@]}"; do
      work=$(mktemp -d -t "keyguard-fuzz-$target.XXXXXX")
      run "$target" "$work" -max_total_time="${FUZZ_SECONDS:-25}"
      rm -rf "$work"
    done
    say "No fuzz target found a problem"
    ;;
  long)
    for target in "${TARGETS[@]}"; do run "$target" "$(found_dir "$target")" -runs="${FUZZ_RUNS:-10000000}"; done
    say "No fuzz target found a problem; fold what the runs found into the corpus with: $0 cmin"
    ;;
  cmin)
    for target in "${TARGETS[@]}"; do
      say "Minimising the corpus of $target"
      if [ -d "$(found_dir "$target")" ]; then cp -n "$(found_dir "$target")"/* "corpus/$target"/ 2>/dev/null || true; fi
      # Edges only (no hit counters): a few hundred files that reach all the code the runs reached.
      cargo "${TOOLCHAIN[@]}" fuzz cmin "${BUILD_FLAGS[@]}" "$target" "corpus/$target" -- -use_counters=0
    done
    ;;
  *) die "unknown mode $MODE (expected short, long, cmin or build)" ;;
esac

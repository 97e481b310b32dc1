#!/usr/bin/env bash
# Reproduces the README's Performance table: builds `keyguard` and `keyguard-bench` in release,
# installs LiteLLM's proxy into a virtualenv beside the build if it is not there yet, and runs
# every scenario against the fake upstream directly, through KeyGuard and through LiteLLM.
# The report goes to bench/results/ (Markdown and JSON). Extra arguments go to keyguard-bench,
# e.g. `scripts/bench.sh --duration 10` or `scripts/bench.sh --soak 600`.
# KEYGUARD_BENCH_NO_LITELLM=1 leaves LiteLLM out.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The flags every other cargo command here uses, so the release build shares their settings.
export RUSTFLAGS="${RUSTFLAGS:---cfg erase_components}"
export LEPTOS_OUTPUT_NAME=keyguard
ensure_cargo

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
venv="${KEYGUARD_BENCH_LITELLM_VENV:-$target_dir/litellm-venv}"

say "Building keyguard and keyguard-bench (release)"
cargo build --release -p server -p bench

litellm=()
if [ -z "${KEYGUARD_BENCH_NO_LITELLM:-}" ]; then
  if [ ! -x "$venv/bin/litellm" ]; then
    say "Installing LiteLLM's proxy into $venv"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'litellm[proxy]'; }; then
      say "LiteLLM could not be installed; the report will say it was not measured"
    fi
  fi
  if [ -x "$venv/bin/litellm" ]; then
    litellm=(--litellm "$venv/bin/litellm")
  fi
fi

say "Running keyguard-bench (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
exec "$target_dir/release/keyguard-bench" --out "$ROOT/bench/results" "${litellm[@]}" "$@"

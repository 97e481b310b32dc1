#!/usr/bin/env bash
# Runs KeyGuard's whole test suite: formatting, lints, unit and integration tests on SQLite and on
# a real PostgreSQL, and the browser tests in Chromium. Installs and starts what it needs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The same flags cargo-leptos uses for debug builds, so that every cargo command below shares
# one set of compiled artifacts instead of rebuilding the world for each.
export RUSTFLAGS="--cfg erase_components"
export LEPTOS_OUTPUT_NAME=keyguard

ensure_cargo
ensure_rust_targets
ensure_rust_components
ensure_leptos_tools
ensure_apt_packages postgresql nats-server chromium

start_postgres() {
  local cluster
  cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')
  [ -n "$cluster" ] || die "PostgreSQL is installed but has no cluster (pg_createcluster)"
  # shellcheck disable=SC2086
  if ! pg_lsclusters --no-header | awk 'NR==1 {exit ($4 == "online") ? 0 : 1}'; then
    say "Starting PostgreSQL $cluster"
    as_root pg_ctlcluster $cluster start
  fi
  local deadline=$((SECONDS + 30))
  until pg_isready -q -h 127.0.0.1; do
    [ $SECONDS -lt $deadline ] || die "PostgreSQL did not accept connections within 30 s"
    sleep 0.2
  done
  say "Preparing the PostgreSQL role and a fresh test database"
  as_postgres "psql -q -v ON_ERROR_STOP=1 -d postgres" <<'SQL' >/dev/null
SELECT 'CREATE ROLE keyguard LOGIN PASSWORD ''keyguard'' CREATEDB'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keyguard') \gexec
DROP DATABASE IF EXISTS keyguard_test WITH (FORCE);
CREATE DATABASE keyguard_test OWNER keyguard;
SQL
  export KEYGUARD_TEST_DATABASE_URL="postgres://keyguard:keyguard@127.0.0.1:5432/keyguard_test"
}

start_nats() {
  export KEYGUARD_TEST_NATS_URL="nats://127.0.0.1:4222"
  if wait_for_port 127.0.0.1 4222 0; then return 0; fi
  local dir
  dir=$(mktemp -d -t keyguard-nats.XXXXXX)
  say "Starting nats-server with JetStream on 127.0.0.1:4222 (data in $dir)"
  nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
  wait_for_port 127.0.0.1 4222 20 || die "nats-server did not listen within 20 s (see $dir/nats.log)"
}

start_postgres
start_nats

say "Checking formatting (cargo fmt --check)"
cargo fmt --all --check

say "Linting (cargo clippy, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p frontend --lib --target wasm32-unknown-unknown -- -D warnings

build_site

say "Running the Rust tests (unit, integration on SQLite and PostgreSQL)"
cargo test --workspace --no-fail-fast

say "Fuzzing the parsers of untrusted input briefly (scripts/fuzz.sh, ~25 s per target)"
"$ROOT/scripts/fuzz.sh"

say "Running the browser tests (Playwright driving Debian's Chromium)"
(
  cd end2end
  npm ci --no-audit --no-fund --loglevel=error
  KEYGUARD_BIN="$(target_dir)/debug/keyguard" KEYGUARD_SITE_ROOT="$ROOT/target/site" npx playwright test
)

say "All checks passed"

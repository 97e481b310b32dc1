#!/usr/bin/env bash
# Builds KeyGuard and serves it on the embedded default: a SQLite file under ./data, no other
# service needed. Open http://127.0.0.1:3000 (LEPTOS_SITE_ADDR changes the address).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_cargo
ensure_rust_targets
ensure_leptos_tools
say "Serving KeyGuard on http://${LEPTOS_SITE_ADDR:-127.0.0.1:3000} (Ctrl-C stops it)"
cd "$ROOT"
exec cargo leptos serve

#!/usr/bin/env bash
# One entry point for developers and CI:
#   ./dev.sh run    build and serve the app with the embedded Jetpay sandbox (cargo leptos watch)
#   ./dev.sh test   format and lint checks, every Rust test (on SQLite, then the server's again on
#                   PostgreSQL with the two-instance tests), then the Playwright suite in Chromium
#                   (one instance on SQLite, then two on PostgreSQL behind a round-robin proxy)
# PostgreSQL is TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432, trust auth); each
# run creates its databases and drops them. Without PostgreSQL, NO_POSTGRES=1 leaves those parts out.
# Both first install, only when missing, the tools they need. The first run on a new machine takes
# about 15 minutes (cargo-leptos compiles from source); later runs install nothing.
set -euo pipefail
cd "$(dirname "$0")"

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
TOOLS_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/saved-cards-tools"
export PATH="$HOME/.cargo/bin:$TOOLS_DIR/node_modules/.bin:$PATH"

say() { printf '\n==> %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "Installing the wasm32-unknown-unknown Rust target (the browser half of the app is WebAssembly)"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
    say "Installing cargo-leptos $CARGO_LEPTOS_VERSION (builds server and WASM together; ~13 minutes, once)"
    cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION" --features no_downloads
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
    say "Installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (must match the wasm-bindgen crate exactly; ~2 minutes, once)"
    # Not --locked: one of its pinned dependencies is no longer on the registry.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
  if ! wasm-opt --version 2>/dev/null | grep -q "version ${BINARYEN_VERSION%%.*}"; then
    say "Installing wasm-opt from npm binaryen@$BINARYEN_VERSION into $TOOLS_DIR (Debian's build produces WASM that never hydrates)"
    mkdir -p "$TOOLS_DIR"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" "binaryen@$BINARYEN_VERSION"
  fi
}

ensure_browser() {
  if ! command -v chromium >/dev/null 2>&1; then
    say "Installing Debian's chromium for the end-to-end tests (Playwright cannot download browsers here)"
    need_root apt-get update -qq
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -d end2end/node_modules/@playwright/test ] \
    || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
    say "Installing the end-to-end test packages (npm ci in end2end/)"
    (cd end2end && npm ci --no-audit --no-fund)
  fi
}

cmd_run() {
  ensure_tools
  say "Serving on http://${LEPTOS_SITE_ADDR:-127.0.0.1:3000} (Ctrl-C stops)"
  exec cargo leptos watch --bin-features sandbox
}

cmd_test() {
  # A one-shot run (CI) gains nothing from incremental compilation, which costs gigabytes of disk.
  if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
  ensure_tools
  ensure_browser
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy (server side, all targets)"
  cargo clippy --workspace --exclude frontend --all-targets -- -D warnings
  say "cargo clippy (browser side, wasm32)"
  cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings
  say "cargo clippy (production server: no embedded sandbox)"
  cargo clippy -p server --no-default-features -- -D warnings
  say "Rust tests (SQLite)"
  cargo test --workspace --exclude frontend -- --skip two_instances_
  if with_postgres; then
    say "Server tests again on PostgreSQL ($TEST_POSTGRES_URL), two-instance tests included"
    TEST_POSTGRES_URL="$TEST_POSTGRES_URL" cargo test -p server --tests
  fi
  say "Building the site for the end-to-end tests"
  cargo leptos build --bin-features sandbox
  say "Benchmark smoke (seconds; the full run is in BENCHMARKS.md)"
  # P3 runs our server with Jetpay in a process of its own, as production has it.
  cargo build -q -p jetpay-sandbox
  if with_postgres; then
    TEST_POSTGRES_URL="$TEST_POSTGRES_URL" cargo run -q -p bench -- --smoke
  else
    cargo run -q -p bench -- --smoke
  fi
  say "Playwright end-to-end tests in Chromium (one instance, SQLite)"
  (cd end2end && npx playwright test)
  if with_postgres; then
    local db="saved_cards_e2e_$$"
    say "Playwright again: two instances on PostgreSQL behind a round-robin proxy"
    psql "$TEST_POSTGRES_URL/postgres" -qc "CREATE DATABASE $db"
    local status=0
    (cd end2end && E2E_INSTANCES=2 E2E_DATABASE_URL="$TEST_POSTGRES_URL/$db" npx playwright test) || status=$?
    psql "$TEST_POSTGRES_URL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    return "$status"
  fi
}

# Whether the PostgreSQL parts run: they do unless NO_POSTGRES=1, and then PostgreSQL must answer.
with_postgres() {
  if [ -n "${NO_POSTGRES:-}" ]; then
    say "NO_POSTGRES is set: skipping the PostgreSQL and two-instance tests"
    return 1
  fi
  TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
  if ! psql "$TEST_POSTGRES_URL/postgres" -qAtc 'SELECT 1' >/dev/null; then
    echo "PostgreSQL does not answer at $TEST_POSTGRES_URL: start it, set TEST_POSTGRES_URL, or set NO_POSTGRES=1" >&2
    exit 1
  fi
}

case "${1:-}" in
  run) cmd_run ;;
  test) cmd_test ;;
  *)
    echo "usage: ./dev.sh run | ./dev.sh test" >&2
    exit 64
    ;;
esac

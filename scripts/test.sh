#!/usr/bin/env bash
# The one command that runs every test of tenantgate on a fresh machine:
#   bash scripts/test.sh
# 1. .venv at the repo root with the pinned packages of scripts/requirements-test.txt
#    (created, or reused while the requirements are unchanged)
# 2. redis-server and curl from Debian when missing (the shared rate limit tests
#    start their own redis-server; the HTTP/2 tests use curl with nghttp2)
# 3. cargo build (debug) and cargo test (all Rust tests, the simulator crate too)
# 4. pytest -q tests/e2e against the built binary (TENANTGATE_BIN, default
#    target/debug/tenantgate)
# Exits non-zero if anything fails. Nothing here is interactive (CI=true is fine).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k identity -x`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
[ "${CI:-}" = "true" ] && export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

# ---- Python environment --------------------------------------------------
VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements-test.txt"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3 python3.13 python3.12 python3.11; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "test.sh: need Python >= 3.11 (set PYTHON=...)" >&2; exit 2; }

if ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  step "creating $VENV with $("$PY" --version 2>&1)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
stamp="$VENV/.requirements-test.sha256"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  step "installing test requirements into .venv"
  "$VENV/bin/python" -m pip install --quiet -r "$REQ"
  echo "$want" >"$stamp"
fi

# ---- redis-server ------------------------------------------------------------
# The shared rate limit tests (Rust and tests/e2e/test_rate_limit_redis.py)
# start their own redis-server on a free 127.0.0.1 port. Install Debian's
# when missing; under CI=true those tests fail without it, elsewhere they skip.
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ] &&
   [ "${SKIP_REDIS_INSTALL:-0}" != 1 ]; then
  step "installing redis-server (apt-get)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  # policy-rc.d (present in containers) keeps the package from starting a
  # system redis; the tests never use its port (6379) anyway.
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server ||
    echo "test.sh: redis-server install failed; the Redis tests will fail under CI=true" >&2
fi

# ---- curl --------------------------------------------------------------------
# tests/e2e/test_http2.py speaks HTTP/2 to the sidecar with curl (Debian's is
# built with nghttp2). Install it when missing; under CI=true those tests
# fail without it, elsewhere they skip.
if ! command -v curl >/dev/null 2>&1 && [ "${SKIP_CURL_INSTALL:-0}" != 1 ]; then
  step "installing curl (apt-get)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl ||
    echo "test.sh: curl install failed; the HTTP/2 tests will fail under CI=true" >&2
fi

# ---- Rust ------------------------------------------------------------------
step "cargo build"
cargo build

failed=()
step "cargo test"
cargo test --workspace --no-fail-fast || failed+=("cargo test")

# ---- end-to-end ------------------------------------------------------------
export TENANTGATE_BIN="${TENANTGATE_BIN:-$ROOT/target/debug/tenantgate}"
step "pytest tests/e2e (TENANTGATE_BIN=$TENANTGATE_BIN)"
set +e
"$VENV/bin/python" -m pytest -q tests/e2e "$@"
rc=$?
set -e
# 5 = no tests collected: that is a failure too, never a silent pass.
[ "$rc" -eq 0 ] || failed+=("pytest tests/e2e (exit $rc)")

if [ ${#failed[@]} -gt 0 ]; then
  printf '\ntest.sh: FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\ntest.sh: all tests passed\n'

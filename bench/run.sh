#!/usr/bin/env bash
# One command for the whole benchmark: tenantgate (static credentials, and
# STS AssumeRole with a warm session cache) vs direct vs nginx, rate limits
# on (local, and shared in Redis), then the sidecar's memory with 10,000
# cached tenants, then streamed ConverseStream with response redaction on vs
# off (time to first byte, CPU per MB), then the request validator's cost,
# then Cedar policy evaluation per request (10 and 1,000 policies).
#   bash bench/run.sh            # ~2 min after the release build
#   bash bench/run.sh --quick    # ~40 s: 3 s phases, 2,000 tenants
# Environment: BENCH_SECS (10), BENCH_RATE (1000), BENCH_CONNS (16),
# BENCH_TENANTS (10000; 0 skips the memory phase), BENCH_TENANT_CONNS (16),
# BENCH_QUICK=1 (same as --quick), BENCH_BIN (another sidecar binary to measure,
# e.g. an earlier release), BENCH_STRICT=1 (exit 1 when a budget or a
# check fails), BENCH_QUIET_WAIT (30), NGINX_BIN, SKIP_NGINX_INSTALL=1,
# REDIS_SERVER_BIN, SKIP_REDIS_INSTALL=1.
# Results: printed, and written to bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
  case "$arg" in
    --quick) export BENCH_QUICK=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $arg (try --quick)" >&2; exit 2 ;;
  esac
done

find_nginx() {
  if [ -n "${NGINX_BIN:-}" ] && [ -x "$NGINX_BIN" ]; then echo "$NGINX_BIN"; return; fi
  command -v nginx 2>/dev/null && return
  for p in /usr/sbin/nginx /sbin/nginx; do [ -x "$p" ] && { echo "$p"; return; }; done
  return 1
}

if ! NGINX=$(find_nginx) && [ "${SKIP_NGINX_INSTALL:-0}" != 1 ]; then
  echo "bench: nginx not found; installing Debian's nginx (apt-get)" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  # policy-rc.d (present in containers) keeps the package from starting a
  # system nginx; the benchmark starts its own, on a free port.
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >&2 || echo "bench: nginx install failed; its phase will be skipped" >&2
  NGINX=$(find_nginx) || NGINX=""
fi
if [ -n "${NGINX:-}" ]; then export NGINX_BIN="$NGINX"; fi

# The `limits on, redis` phase starts its own redis-server on a free port.
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ] && [ "${SKIP_REDIS_INSTALL:-0}" != 1 ]; then
  echo "bench: redis-server not found; installing Debian's redis-server (apt-get)" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  # policy-rc.d keeps the package from starting a system redis; the bench
  # never uses its port anyway.
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2 || echo "bench: redis-server install failed; its phase will be skipped" >&2
fi

for tool in taskset openssl; do
  command -v "$tool" >/dev/null || echo "bench: warning: $tool not found" >&2
done

# Builds the release binary (the bench profile inherits release) and runs
# benches/proxy.rs, then benches/stream.rs (ConverseStream with redaction on
# vs off), then benches/validate.rs (request validation per request, in
# process); each bench starts and stops the sidecars and nginx itself.
cargo bench --bench proxy
cargo bench --bench stream
cargo bench --bench validate
cargo bench --bench policy

#!/usr/bin/env bash
# Bounded fuzzing of every parser an attacker reaches (request validator, JSON
# pre-scan, routes, identity tokens, filter composition, event streams):
#   bash scripts/fuzz.sh                         # every target, 120 s each
#   FUZZ_SECS=600 bash scripts/fuzz.sh route_path request_validator
#   FUZZ_JOBS=2 bash scripts/fuzz.sh             # two targets at a time
# Installs cargo-fuzz when missing. Works on the stable toolchain: the
# sanitizer is off (`-s none`; the code under test has no `unsafe`) and
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its coverage flags. Seeds in
# fuzz/seeds/<target>/ are copied into the corpus first. Crashes land in
# fuzz/artifacts/<target>/ and make the script exit non-zero. Each target's
# last lines (runs, coverage) are kept in fuzz/artifacts/<target>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
SECS="${FUZZ_SECS:-120}"
JOBS="${FUZZ_JOBS:-1}"
ALL=(request_validator json_scan route_path identity_token retrieval_filter stream_split eventstream_redact)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Seeds for the stream targets: an identity id split across events of one
# text with unrelated events and other texts in between, for each stream kind
# (first byte: kind and chunking; second: the model path; then events cut at
# 0xFF, each led by a byte choosing text 0-2, 6 = unrelated, 7 = end), and a
# near miss.
mkdir -p seeds/stream_split seeds/eventstream_redact
rm -f seeds/stream_split/seed-*
for k in 0 1 2; do
  printf "\\00${k}\\005\\000Your id is us-west-2:1234\\377\\006\\377\\001other text \\377\\0005678-abcd-1234-462b-1\\377\\00023456789abc ok\\377\\007" >"seeds/stream_split/seed-split-id-$k"
done
printf '\000\011\000Thus far\377\000us\377\000-west-2 is a region' >seeds/stream_split/seed-near-miss

printf '\n==> building %s\n' "${targets[*]}"
for t in "${targets[@]}"; do
  RUSTC_BOOTSTRAP=1 cargo fuzz build -s none "$t" >/dev/null
done

run() {
  local t="$1"
  mkdir -p "corpus/$t" "artifacts/$t"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" -- -max_total_time="$SECS" -max_len=8192 -print_final_stats=1 \
    >"artifacts/$t.full.log" 2>&1 || true
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked|ERROR|crash-' \
    "artifacts/$t.full.log" >"artifacts/$t.log" || true
  printf '\n==> %s (%s s)\n' "$t" "$SECS"
  cat "artifacts/$t.log"
}

running=0
for t in "${targets[@]}"; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

status=0
for t in "${targets[@]}"; do
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz.sh: $t found a crash: $(ls artifacts/"$t"/crash-* | head -1)" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "fuzz.sh: no crashes"
exit "$status"

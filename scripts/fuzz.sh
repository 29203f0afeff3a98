#!/usr/bin/env bash
# Bounded fuzzing of the event-stream decoder, the redactor and the request validator:
#   bash scripts/fuzz.sh            # every target, 120 s each
#   FUZZ_SECS=600 bash scripts/fuzz.sh stream_split
# Installs cargo-fuzz when missing. Works on the stable toolchain: the
# sanitizer is off (`-s none`; the code under test has no `unsafe`) and
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its coverage flags. Crashes land in
# fuzz/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
SECS="${FUZZ_SECS:-120}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(stream_split eventstream_redact request_validator)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Seeds: an identity id split across deltas, and a near miss.
mkdir -p corpus/stream_split corpus/eventstream_redact
printf '\003Your id is us-west-2:1234\3775678-abcd-1234-462b-1\37723456789abc ok' >corpus/stream_split/seed-split-id
printf '\000Thus far\377us\377-west-2 is a region' >corpus/stream_split/seed-near-miss
# Checked-in seeds (fuzz/seeds/<target>/), e.g. the bodies boto3 sends.
for d in seeds/*/; do
  t="$(basename "$d")"
  mkdir -p "corpus/$t" && cp -n "$d"* "corpus/$t/" 2>/dev/null || true
done

for t in "${targets[@]}"; do
  printf '\n==> fuzzing %s for %s s\n' "$t" "$SECS"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" -- -max_total_time="$SECS" -max_len=4096 -print_final_stats=1 2>&1 |
    grep -E '^(Done|stat::number_of_executed_units|==|SUMMARY|.*panicked)|ERROR|crash-' || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz.sh: $t found a crash: $(ls artifacts/"$t"/crash-* | head -1)" >&2
    exit 1
  fi
done
echo "fuzz.sh: no crashes"

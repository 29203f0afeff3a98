#!/usr/bin/env bash
# Regenerates models/aws/<service>/service-2.json from botocore's JSON service
# models (Apache-2.0), the ones the request validator (src/validate) embeds.
#
#   scripts/update-models.sh            # the pinned version below
#   scripts/update-models.sh 1.45.0     # another botocore version
#
# Needs python3 (>= 3.8) and pip, with PyPI reachable; nothing else. The wheel
# is downloaded into a temporary directory and read as a zip file; only the
# "documentation" strings are removed (they are ~70% of the size and the
# validator never reads them). Rebuild the image afterwards; models/aws/NOTICE
# and LICENSE are rewritten from the wheel with the version.
set -euo pipefail

VERSION="${1:-1.44.5}"
SERVICES=(bedrock-runtime bedrock-agent-runtime sagemaker-runtime)
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/models/aws"
PY="${PYTHON:-python3}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$TMP" "botocore==$VERSION"
WHEEL="$(ls "$TMP"/botocore-"$VERSION"-*.whl)"

"$PY" - "$WHEEL" "$OUT" "$VERSION" "${SERVICES[@]}" <<'PY'
import gzip, json, os, re, sys, zipfile

wheel, out, version, services = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k != "documentation"}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o

with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for svc in services:
        pat = re.compile(r"^botocore/data/%s/([0-9-]+)/service-2\.json(\.gz)?$" % re.escape(svc))
        found = sorted((m.group(1), n) for n in names for m in [pat.match(n)] if m)
        if not found:
            sys.exit(f"{svc}: no service-2.json in {os.path.basename(wheel)}")
        api_version, name = found[-1]  # the newest API version, as botocore loads it
        raw = z.read(name)
        if name.endswith(".gz"):
            raw = gzip.decompress(raw)
        model = strip(json.loads(raw))
        if model.get("metadata", {}).get("protocol") != "rest-json":
            sys.exit(f"{svc}: protocol {model.get('metadata', {}).get('protocol')!r}, the validator knows rest-json only")
        os.makedirs(os.path.join(out, svc), exist_ok=True)
        with open(os.path.join(out, svc, "service-2.json"), "w", encoding="utf-8") as f:
            json.dump(model, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"{svc}: API {api_version} from botocore {version}")

    dist = f"botocore-{version}.dist-info/"
    license_txt = z.read(dist + "LICENSE.txt").decode("utf-8")
    botocore_notice = z.read(dist + "NOTICE").decode("utf-8").split("\n----")[0].strip()

with open(os.path.join(out, "LICENSE"), "w", encoding="utf-8") as f:
    f.write(license_txt)
with open(os.path.join(out, "NOTICE"), "w", encoding="utf-8") as f:
    quoted = "\n".join("    " + l if l else "" for l in botocore_notice.splitlines())
    f.write(f"""AWS service models
==================

models/aws/<service>/service-2.json are the JSON service models of
{", ".join(services)}
from botocore {version} (https://github.com/boto/botocore; the wheel
botocore=={version} on PyPI), licensed under the Apache License, Version 2.0
(models/aws/LICENSE, https://www.apache.org/licenses/LICENSE-2.0).
botocore's NOTICE:

{quoted}

Modification: the "documentation" strings were removed; nothing else changed.
Regenerate with scripts/update-models.sh (it pins the botocore version).
""")
PY

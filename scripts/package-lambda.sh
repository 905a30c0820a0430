#!/usr/bin/env bash
# Build the Lambda package that infrastructure/platform.json deploys: build/lambda.zip.
#
#   make trust-store                  # the production JPKI trust anchor, copied into chalicelib/trust/
#   ./scripts/package-lambda.sh       # or: make package
#
# What goes in: requirements.txt (and boto3, see below) installed for the Lambda platform (the runtime and architecture are read
# from tools/infrastructure.py, so the package and the template cannot disagree), Chalice's runtime module
# (chalice/__init__.py and chalice/app.py, exactly what `chalice package` adds; requirements.txt has no
# chalice), app.py and chalicelib/ (with the trust store, without caches). Nothing else: no tests, no
# tools, no terminal client, no .chalice.
#
# The zip is reproducible (sorted entries, fixed timestamps): the same sources and wheels give the same
# bytes, so its SHA-256 names the S3 key and CloudFormation updates the functions only when it changed.
# Needs network access to PyPI; never run by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
BUILD_DIR=build/lambda
ZIP=build/lambda.zip
TRUST_STORE=chalicelib/trust/jpki-user-authentication-anchors.pem

if [[ ! -s "$TRUST_STORE" ]]; then
    echo "missing $TRUST_STORE: run \`make trust-store\` first (the production CARD_TRUST_STORE)" >&2
    exit 1
fi

read -r RUNTIME ARCHITECTURE < <("$PY" -c 'from tools.infrastructure import ARCHITECTURE, RUNTIME; print(RUNTIME, ARCHITECTURE)')
PYTHON_VERSION=${RUNTIME#python}
case "$ARCHITECTURE" in
    arm64) WHEEL_PLATFORM=manylinux2014_aarch64 ;;
    x86_64) WHEEL_PLATFORM=manylinux2014_x86_64 ;;
    *) echo "unknown architecture $ARCHITECTURE" >&2; exit 1 ;;
esac

# requirements.txt leaves boto3 to the runtime, but PynamoDB brings its own botocore into the package,
# which would shadow the runtime's and pair it with a boto3 of another release: package the boto3 the
# tests run with (requirements-dev.txt's pin) so the two always match.
BOTO3_PIN=$(grep -E '^boto3==' requirements-dev.txt)

rm -rf "$BUILD_DIR" "$ZIP"
mkdir -p "$BUILD_DIR/chalice"
echo "installing requirements.txt for $RUNTIME on $ARCHITECTURE ($WHEEL_PLATFORM)"
"$PY" -m pip install --quiet --disable-pip-version-check --no-compile \
    --platform "$WHEEL_PLATFORM" --implementation cp --python-version "$PYTHON_VERSION" --only-binary=:all: \
    --target "$BUILD_DIR" -r requirements.txt "$BOTO3_PIN"

CHALICE_DIR=$("$PY" -c 'import chalice, os; print(os.path.dirname(chalice.__file__))')
cp "$CHALICE_DIR/__init__.py" "$CHALICE_DIR/app.py" "$BUILD_DIR/chalice/"
cp app.py "$BUILD_DIR/"
cp -R chalicelib "$BUILD_DIR/"
find "$BUILD_DIR" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +

"$PY" - "$BUILD_DIR" "$ZIP" <<'PYTHON'
import os
import sys
import zipfile

source, target = sys.argv[1], sys.argv[2]
paths = []
for directory, subdirectories, files in os.walk(source):
    subdirectories.sort()
    paths.extend(os.path.join(directory, name) for name in sorted(files))
with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
    for path in paths:
        info = zipfile.ZipInfo(os.path.relpath(path, source), date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
        with open(path, "rb") as handle:
            archive.writestr(info, handle.read())
PYTHON

SHA256=$(sha256sum "$ZIP" | cut -d' ' -f1)
echo "built $ZIP ($(du -h "$ZIP" | cut -f1), sha256 $SHA256)"
echo "upload it as: s3://<CodeBucket>/municipal-point-cloud/lambda-${SHA256:0:16}.zip  (CodeKey=municipal-point-cloud/lambda-${SHA256:0:16}.zip)"

#!/usr/bin/env bash
# Build the Lambda package that infrastructure/platform.json deploys: build/lambda.zip.
#
#   ./scripts/package-lambda.sh                 # or: make package
#   ./scripts/package-lambda.sh --app-only DIR  # only app.py, chalicelib/ and Chalice's runtime, compiled, into DIR
#                                               # (no pip, no zip: what the tests check, offline)
#
# Needs only Python and pip: the runtime's Python (python3.12, found on PATH or through pyenv, or named by
# PACKAGE_PYTHON) with pip, and any python3 to read the runtime; not the development environment. The steps
# are tools/lambda_package.py (standard library only).
#
# What goes in: requirements.txt (and boto3, see below) installed for the Lambda platform (the runtime and architecture are read
# from tools/infrastructure.py, so the package and the template cannot disagree), Chalice's runtime module
# (chalice/__init__.py and chalice/app.py, exactly what `chalice package` adds; requirements.txt has no
# chalice), app.py and chalicelib/ (with the committed JPKI trust anchors of chalicelib/trust/, without caches). Nothing else: no tests, no
# tools, no terminal client, no .chalice.
#
# Every .py is compiled by the runtime's Python into unchecked-hash bytecode (Lambda cannot write .pyc into
# /var/task, and the zip's fixed timestamps would make timestamp-checked .pyc stale): cold starts load the
# bytecode instead of compiling the app and its libraries each time.
#
# The zip is reproducible (sorted entries, fixed timestamps): the same sources and wheels give the same
# bytes, so its SHA-256 names the S3 key and CloudFormation updates the functions only when it changed.
# Needs network access to PyPI; the tests run only --app-only.
set -euo pipefail
cd "$(dirname "$0")/.."

APP_ONLY=
if [[ "${1:-}" == "--app-only" ]]; then
    APP_ONLY=${2:?--app-only needs a folder}
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--app-only DIR]" >&2
    exit 2
fi
BOOTSTRAP_PYTHON=${BOOTSTRAP_PYTHON:-python3}
BUILD_DIR=build/lambda
ZIP=build/lambda.zip
TRUST_STORE=chalicelib/trust/jpki-user-authentication-anchors.pem

if [[ ! -s "$TRUST_STORE" ]]; then
    echo "missing $TRUST_STORE: the committed JPKI trust anchors (the production CARD_TRUST_STORE) are not in this checkout; restore them from git (chalicelib/trust/README.md)" >&2
    exit 1
fi

read -r RUNTIME ARCHITECTURE < <("$BOOTSTRAP_PYTHON" -m tools.lambda_package runtime) || true
if [[ -z "${RUNTIME:-}" || -z "${ARCHITECTURE:-}" ]]; then
    echo "could not read RUNTIME and ARCHITECTURE from tools/infrastructure.py with $BOOTSTRAP_PYTHON" >&2
    exit 1
fi
# The interpreter that compiles the bytecode and runs pip: the runtime's own version, or a clear error.
PACKAGE_PYTHON=$("$BOOTSTRAP_PYTHON" -m tools.lambda_package python --requested "${PACKAGE_PYTHON:-}")
PYTHON_VERSION=${RUNTIME#python}

if [[ -n "$APP_ONLY" ]]; then
    # Chalice's runtime from an installed chalice: CHALICE_DIR, or the development environment's.
    CHALICE_DIR=${CHALICE_DIR:-$(.venv/bin/python -c 'import chalice, os; print(os.path.dirname(chalice.__file__))')}
    rm -rf "$APP_ONLY"
    "$PACKAGE_PYTHON" -m tools.lambda_package stage "$APP_ONLY" --chalice-dir "$CHALICE_DIR"
    "$PACKAGE_PYTHON" -m tools.lambda_package compile "$APP_ONLY"
    echo "staged and compiled the application for $RUNTIME in $APP_ONLY"
    exit 0
fi

if ! "$PACKAGE_PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "$PACKAGE_PYTHON has no pip: install it ($PACKAGE_PYTHON -m ensurepip --upgrade) and run again" >&2
    exit 1
fi
case "$ARCHITECTURE" in
    arm64) WHEEL_PLATFORM=manylinux2014_aarch64 ;;
    x86_64) WHEEL_PLATFORM=manylinux2014_x86_64 ;;
    *) echo "unknown architecture $ARCHITECTURE" >&2; exit 1 ;;
esac

# requirements.txt leaves boto3 to the runtime, but PynamoDB brings its own botocore into the package,
# which would shadow the runtime's and pair it with a boto3 of another release: package the boto3 the
# tests run with (requirements-dev.txt's pin) so the two always match. Chalice's runtime comes from the
# chalice the tests run with, too.
BOTO3_PIN=$(grep -E '^boto3==' requirements-dev.txt)
CHALICE_PIN=$(grep -E '^chalice==' requirements-dev.txt)
PIP=("$PACKAGE_PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile)

rm -rf "$BUILD_DIR" "$ZIP" build/chalice-runtime
mkdir -p "$BUILD_DIR"
echo "installing requirements.txt for $RUNTIME on $ARCHITECTURE ($WHEEL_PLATFORM)"
"${PIP[@]}" --platform "$WHEEL_PLATFORM" --implementation cp --python-version "$PYTHON_VERSION" --only-binary=:all: \
    --target "$BUILD_DIR" -r requirements.txt "$BOTO3_PIN"
"${PIP[@]}" --no-deps --target build/chalice-runtime "$CHALICE_PIN"

"$PACKAGE_PYTHON" -m tools.lambda_package stage "$BUILD_DIR" --chalice-dir build/chalice-runtime/chalice
rm -rf build/chalice-runtime
find "$BUILD_DIR" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
echo "compiling bytecode with $PACKAGE_PYTHON (unchecked-hash)"
"$PACKAGE_PYTHON" -m tools.lambda_package compile "$BUILD_DIR"
"$PACKAGE_PYTHON" -m tools.lambda_package zip "$BUILD_DIR" "$ZIP"

SHA256=$(sha256sum "$ZIP" | cut -d' ' -f1)
echo "built $ZIP ($(du -h "$ZIP" | cut -f1), sha256 $SHA256)"
echo "upload it as: s3://<CodeBucket>/municipal-point-cloud/lambda-${SHA256:0:16}.zip  (CodeKey=municipal-point-cloud/lambda-${SHA256:0:16}.zip)"

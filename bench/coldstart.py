"""Section 3: cold start — `import app` next to `import boto3` alone, each in fresh interpreters, same run.

Each sample is a new Python process started with an empty environment (no AWS or app variables: the
app must not need any at import) that times its one import statement with `time.perf_counter`, so
interpreter start-up is left out of both. The two kinds alternate, so drift hits both alike.

Two conditions:
* `cached` (the headline): byte code compiled once beforehand into a private cache directory
  (`PYTHONPYCACHEPREFIX`) shared by both kinds, as on a warm file system;
* `source`: an empty cache every time, nothing written — every module compiled from source. The Lambda
  package `scripts/package-lambda.sh` builds carries no `.pyc` files and /var/task is read-only, so this
  is what a Lambda cold start pays for whatever the package holds (boto3 included: it is packaged).

The payment path's own imports (store, ledger, card checks) happen at the first request, not at import:
`import_payment_path_ms` times `import app` plus those modules, for what a first payment adds.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

from bench.operations import log
from bench.stats import rounded
from tools.localcloud.processes import REPOSITORY_ROOT

PROGRAMS = {
    "app": "import app",
    "boto3": "import boto3",
    "payment_path": "import app, chalicelib.storage.dynamo, chalicelib.services.ledger, chalicelib.auth.cards, "
                    "cryptography.x509, aws_lambda_powertools.logging",
}
_TIMER = ("import time, sys\nstarted = time.perf_counter()\n{statement}\n"
          "elapsed = (time.perf_counter() - started) * 1000\n"
          "print(elapsed, int('boto3' in sys.modules), int('pynamodb' in sys.modules), len(sys.modules))")


def _sample(kind: str, cache_dir: str, write_cache: bool) -> dict:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                   "LANG": "C.UTF-8", "PYTHONPYCACHEPREFIX": cache_dir}
    if not write_cache:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    answer = subprocess.run([sys.executable, "-c", _TIMER.format(statement=PROGRAMS[kind])], cwd=REPOSITORY_ROOT,
                            env=environment, capture_output=True, text=True, timeout=120, check=True)
    elapsed, has_boto3, has_pynamodb, modules = answer.stdout.split()
    return {"ms": float(elapsed), "boto3_loaded": has_boto3 == "1", "pynamodb_loaded": has_pynamodb == "1",
            "modules": int(modules)}


def run(samples: int = 15, source_samples: int = 5) -> dict:
    log(f"cold start: {samples} fresh interpreters of each kind (cached byte code), {source_samples} from source")
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache_dir:
        for kind in PROGRAMS:  # compile once into the private cache, not measured
            _sample(kind, cache_dir, write_cache=True)
        cached: dict[str, list[dict]] = {kind: [] for kind in PROGRAMS}
        for _ in range(samples):
            for kind in PROGRAMS:
                cached[kind].append(_sample(kind, cache_dir, write_cache=False))
    source: dict[str, list[dict]] = {"app": [], "boto3": []}
    for _ in range(source_samples):
        for kind in source:
            with tempfile.TemporaryDirectory(prefix="bench-pycache-empty-") as empty:
                source[kind].append(_sample(kind, empty, write_cache=False))

    def median(runs: list[dict]) -> float:
        return rounded(statistics.median(run["ms"] for run in runs), 1)

    result = {
        "samples": samples,
        "import_app_ms": median(cached["app"]),
        "import_boto3_ms": median(cached["boto3"]),
        "ratio": rounded(median(cached["app"]) / median(cached["boto3"]), 2),
        "import_payment_path_ms": median(cached["payment_path"]),
        "payment_path_ratio": rounded(median(cached["payment_path"]) / median(cached["boto3"]), 2),
        "app_imports_boto3": any(run["boto3_loaded"] for run in cached["app"]),
        "app_imports_pynamodb": any(run["pynamodb_loaded"] for run in cached["app"]),
        "app_modules_loaded": cached["app"][0]["modules"],
        "environment": "empty (no AWS_* or app variables): import needs none",
        "source": {
            "samples": source_samples,
            "import_app_ms": median(source["app"]),
            "import_boto3_ms": median(source["boto3"]),
            "ratio": rounded(median(source["app"]) / median(source["boto3"]), 2),
        },
        "all_ms": {kind: [rounded(run["ms"], 1) for run in runs] for kind, runs in cached.items()},
    }
    log(f"cold start: import app {result['import_app_ms']} ms, import boto3 {result['import_boto3_ms']} ms, "
        f"ratio {result['ratio']}; payment path {result['import_payment_path_ms']} ms")
    return result

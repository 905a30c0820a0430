"""The Lambda package's application part, as `scripts/package-lambda.sh --app-only` builds it (offline, no pip).

The package ships bytecode compiled by the runtime's Python in unchecked-hash mode, so a cold start loads
it instead of compiling (Lambda cannot write `.pyc` into /var/task, and the zip's fixed 1980 timestamps
would make timestamp-checked bytecode stale). These tests build the application part with the runtime's
Python (3.12, found as `make package` finds it), check every module's `.pyc` header, check what is in the
package and what is not, and load the app from the zipped-and-unpacked package with every source replaced
by a syntax error: only bytecode used as it is can import. Skipped, with the reason, when this machine has
no Python of the runtime's version.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.lambda_package import (
    PackagingError,
    compile_bytecode,
    find_runtime_python,
    runtime_constants,
    runtime_version,
    write_zip,
)
from tools.localcloud.processes import REPOSITORY_ROOT

SCRIPT = REPOSITORY_ROOT / "scripts" / "package-lambda.sh"
TRUST_BUNDLE = Path("chalicelib") / "trust" / "jpki-user-authentication-anchors.pem"
RUNTIME, ARCHITECTURE = runtime_constants()
VERSION = runtime_version(RUNTIME)
CACHE_TAG = "cpython-%d%d" % VERSION
# PEP 552: the second word of a .pyc header; bit 0 = hash-based, bit 1 = check the source.
UNCHECKED_HASH_FLAGS = 0b01


@pytest.fixture(scope="module")
def runtime_python() -> str:
    try:
        return find_runtime_python(VERSION, os.environ.get("PACKAGE_PYTHON") or None)
    except PackagingError as error:
        pytest.skip(f"no Python {VERSION[0]}.{VERSION[1]} on this machine to compile the package with: {error}")


@pytest.fixture(scope="module")
def app_package(runtime_python, tmp_path_factory) -> Path:
    import chalice

    folder = tmp_path_factory.mktemp("lambda-package") / "app"
    environment = {**os.environ, "PACKAGE_PYTHON": runtime_python, "CHALICE_DIR": os.path.dirname(chalice.__file__)}
    built = subprocess.run([str(SCRIPT), "--app-only", str(folder)], cwd=REPOSITORY_ROOT, env=environment,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    return folder


def run_runtime_python(runtime_python: str, code: str, cwd: Path) -> subprocess.CompletedProcess:
    # -E -s: nothing from the environment or the user's site-packages, as on Lambda; -B: write no bytecode.
    return subprocess.run([runtime_python, "-E", "-s", "-B", "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_runtime_constants__read_from_source__agree_with_the_infrastructure_module():
    import tools.infrastructure

    assert (RUNTIME, ARCHITECTURE) == (tools.infrastructure.RUNTIME, tools.infrastructure.ARCHITECTURE)


def test_make_package__does_not_depend_on_the_development_install():
    rules = [line for line in (REPOSITORY_ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
             if line.startswith("package:")]

    assert len(rules) == 1
    assert rules[0].split("##")[0].removeprefix("package:").split() == []


def test_package_script__without_the_runtimes_python__stops_naming_the_version(tmp_path):
    environment = {**os.environ, "PACKAGE_PYTHON": str(tmp_path / "no-such-python3.12")}

    result = subprocess.run([str(SCRIPT), "--app-only", str(tmp_path / "app")], cwd=REPOSITORY_ROOT, env=environment,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode != 0
    assert f"Python {VERSION[0]}.{VERSION[1]}" in result.stderr
    assert "PACKAGE_PYTHON" in result.stderr
    assert not (tmp_path / "app").exists()


def test_compile_bytecode__with_another_python_than_the_runtimes__is_refused(tmp_path):
    other_runtime = "python%d.%d" % (sys.version_info[0], sys.version_info[1] + 1)

    with pytest.raises(PackagingError, match=re.escape("must be compiled by Python %d.%d" % (sys.version_info[0], sys.version_info[1] + 1))):
        compile_bytecode(tmp_path, other_runtime)


def test_app_package__every_module_has_unchecked_hash_bytecode_of_the_runtimes_python(app_package, runtime_python):
    sources = sorted(app_package.rglob("*.py"))
    # The runtime's magic number and each source's hash, as the runtime's Python computes them.
    facts = run_runtime_python(runtime_python, (
        "import importlib.util, json\n"
        "paths = json.loads(" + repr(json.dumps([str(path) for path in sources])) + ")\n"
        "print(json.dumps({'magic': importlib.util.MAGIC_NUMBER.hex(),"
        " 'hashes': {p: importlib.util.source_hash(open(p, 'rb').read()).hex() for p in paths}}))"
    ), app_package)
    assert facts.returncode == 0, facts.stderr
    facts = json.loads(facts.stdout)

    assert len(sources) > 40  # app.py, chalicelib and Chalice's runtime
    for source in sources:
        bytecode = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
        assert bytecode.is_file(), f"no bytecode for {source.relative_to(app_package)}"
        header = bytecode.read_bytes()[:16]
        assert header[:4].hex() == facts["magic"], source
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH_FLAGS, source
        assert header[8:16].hex() == facts["hashes"][str(source)], source


def test_app_package__holds_the_app_its_library_chalices_runtime_and_the_trust_bundle__nothing_else(app_package):
    top_level = sorted(path.name for path in app_package.iterdir())
    chalice_runtime = sorted(path.name for path in (app_package / "chalice").iterdir())
    every_part = {part for path in app_package.rglob("*") for part in path.relative_to(app_package).parts}
    repository_modules = {path.relative_to(REPOSITORY_ROOT) for path in (REPOSITORY_ROOT / "chalicelib").rglob("*.py")}

    assert top_level == ["__pycache__", "app.py", "chalice", "chalicelib"]
    assert chalice_runtime == ["__init__.py", "__pycache__", "app.py"]
    assert (app_package / TRUST_BUNDLE).read_bytes() == (REPOSITORY_ROOT / TRUST_BUNDLE).read_bytes()
    assert every_part.isdisjoint({"tests", "tools", "terminal_client", ".chalice", "bench", "reliability"})
    assert {path.relative_to(app_package) for path in (app_package / "chalicelib").rglob("*.py")} == repository_modules


def test_app_package__unpacked_from_its_zip__loads_the_app_from_bytecode_without_compiling(app_package, runtime_python, tmp_path):
    archive, unpacked = tmp_path / "lambda.zip", tmp_path / "task"
    write_zip(app_package, archive)
    with zipfile.ZipFile(archive) as opened:
        assert {info.date_time for info in opened.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        opened.extractall(unpacked)
    # Every source becomes a syntax error: compiling any of them would fail the import.
    for source in unpacked.rglob("*.py"):
        source.write_text("this source was replaced after compiling (\n", encoding="utf-8")
    files_before = sorted(unpacked.rglob("*"))

    loaded = run_runtime_python(runtime_python, (
        "import json, os, sys\n"
        "import app\n"
        "assert isinstance(app.app, __import__('chalice').Chalice)\n"
        "root = os.getcwd()\n"
        "mine = {name: module.__spec__.cached for name, module in sys.modules.items()\n"
        "        if getattr(module, '__file__', None) and module.__file__.startswith(root)}\n"
        "print(json.dumps({'dont_write_bytecode': sys.dont_write_bytecode, 'modules': mine}))"
    ), unpacked)

    assert loaded.returncode == 0, loaded.stderr
    report = json.loads(loaded.stdout)
    assert report["dont_write_bytecode"] is True
    assert {"app", "chalice.app", "chalicelib.api.terminal_routes", "chalicelib.observability"} <= set(report["modules"])
    assert all(cached.endswith(f".{CACHE_TAG}.pyc") for cached in report["modules"].values())
    assert sorted(unpacked.rglob("*")) == files_before
    # The control: without its bytecode the same module's replaced source is compiled, and fails.
    (unpacked / "chalicelib" / "__pycache__" / f"config.{CACHE_TAG}.pyc").unlink()
    without_bytecode = run_runtime_python(runtime_python, "import chalicelib.config", unpacked)
    assert without_bytecode.returncode != 0
    assert "SyntaxError" in without_bytecode.stderr

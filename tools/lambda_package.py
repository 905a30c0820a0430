"""The steps of building the Lambda package (`scripts/package-lambda.sh`, `make package`), standard library only.

Building the package needs Python and pip and nothing of the development tooling, so this module imports
nothing outside the standard library and never imports the app: it reads the runtime and architecture
from tools/infrastructure.py's source, so the package and the template cannot disagree.

The package ships bytecode compiled by the runtime's own Python (python3.12). Lambda cannot write `.pyc`
files into /var/task, so without them every cold start compiles the whole app and its libraries again
(loading the app took 1.3–2.0 s without and 0.5–0.7 s with them, measured on the unzipped package). The
`.pyc` files are in unchecked-hash mode: the zip stores every file with the same 1980 timestamp, against
which timestamp-checked bytecode would be judged stale and compiled again (and not saved) on every cold
start; an unchecked-hash `.pyc` is used as it is, which is right for files that can never change.

    python3 -m tools.lambda_package runtime                  # "python3.12 arm64"
    python3 -m tools.lambda_package python                   # path of the runtime's interpreter on this machine
    python3.12 -m tools.lambda_package stage DIR --chalice-dir CHALICE   # app.py, chalicelib/, Chalice's runtime
    python3.12 -m tools.lambda_package compile DIR           # bytecode for every .py under DIR
    python3 -m tools.lambda_package zip DIR ZIP              # the reproducible zip
"""
from __future__ import annotations

import argparse
import ast
import os
import py_compile
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
INFRASTRUCTURE_SOURCE = REPOSITORY_ROOT / "tools" / "infrastructure.py"
# Chalice's runtime is these two modules, exactly what `chalice package` adds (requirements.txt has no chalice).
CHALICE_RUNTIME_MODULES = ("__init__.py", "app.py")
# Where Lambda unpacks the package: compiled into the bytecode as the source path, so the bytes do not
# depend on the folder the package was built in (importing fixes the path up to the real one anyway).
LAMBDA_TASK_ROOT = "/var/task"


class PackagingError(Exception):
    """The package cannot be built on this machine; the message says what is missing."""


def runtime_constants(source: Path = INFRASTRUCTURE_SOURCE) -> tuple[str, str]:
    """RUNTIME and ARCHITECTURE as tools/infrastructure.py assigns them, read without importing it."""
    found: dict[str, str] = {}
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("RUNTIME", "ARCHITECTURE"):
                    found[target.id] = node.value.value
    if set(found) != {"RUNTIME", "ARCHITECTURE"}:
        raise PackagingError(f"{source} does not assign RUNTIME and ARCHITECTURE as string constants")
    return found["RUNTIME"], found["ARCHITECTURE"]


def runtime_version(runtime: str) -> tuple[int, int]:
    """(3, 12) for "python3.12"."""
    if not runtime.startswith("python"):
        raise PackagingError(f"unknown Lambda runtime {runtime!r}: expected pythonX.Y")
    major, minor = runtime.removeprefix("python").split(".")
    return int(major), int(minor)


def _reports_version(interpreter: str, version: tuple[int, int]) -> bool:
    try:
        result = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip() == "%d.%d" % version


def find_runtime_python(version: tuple[int, int], requested: str | None = None) -> str:
    """The interpreter that compiles the package: `requested` (PACKAGE_PYTHON) if given, else pythonX.Y on
    PATH, else pyenv's installation of that version. Each candidate is run, not only looked up: a pyenv
    shim for a version that is not active is on PATH but fails."""
    name = "python%d.%d" % version
    if requested:
        candidates = [requested]
    else:
        candidates = [name]
        pyenv = shutil.which("pyenv")
        if pyenv:
            prefix = subprocess.run([pyenv, "prefix", "%d.%d" % version], capture_output=True, text=True)
            if prefix.returncode == 0 and prefix.stdout.strip():
                candidates.append(str(Path(prefix.stdout.strip().splitlines()[0]) / "bin" / name))
    for candidate in candidates:
        if _reports_version(candidate, version):
            return shutil.which(candidate) or candidate
    raise PackagingError(
        f"the Lambda package must be compiled by Python {version[0]}.{version[1]}, the runtime's ({name}), "
        f"and none was found (tried: {', '.join(candidates)}). Install Python {version[0]}.{version[1]} with pip, "
        f"or name it: make package PACKAGE_PYTHON=/path/to/{name}"
    )


def _without_caches(directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name == "__pycache__" or name.endswith((".pyc", ".pyo"))]


def stage_application(build_dir: Path, chalice_dir: Path, repository_root: Path = REPOSITORY_ROOT) -> None:
    """Copy what the functions run into build_dir: app.py, chalicelib/ (trust anchors and web pages
    included, caches left out) and Chalice's runtime. Nothing else: no tests, tools or terminal client."""
    build_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(repository_root / "app.py", build_dir / "app.py")
    shutil.copytree(repository_root / "chalicelib", build_dir / "chalicelib", ignore=_without_caches, dirs_exist_ok=True)
    (build_dir / "chalice").mkdir(exist_ok=True)
    for module in CHALICE_RUNTIME_MODULES:
        if not (chalice_dir / module).is_file():
            raise PackagingError(f"{chalice_dir / module} is missing: point --chalice-dir at an installed chalice package")
        shutil.copy2(chalice_dir / module, build_dir / "chalice" / module)


def compile_bytecode(build_dir: Path, runtime: str) -> None:
    """Compile every .py under build_dir to unchecked-hash bytecode, with this interpreter, which must be
    the runtime's: Python only loads bytecode of its own version (`__pycache__/*.cpython-312.pyc`)."""
    import compileall

    version = runtime_version(runtime)
    if sys.version_info[:2] != version:
        raise PackagingError(
            f"bytecode for {runtime} must be compiled by Python {version[0]}.{version[1]}, "
            f"not by Python {sys.version_info[0]}.{sys.version_info[1]} ({sys.executable})"
        )
    compiled = compileall.compile_dir(
        str(build_dir), ddir=LAMBDA_TASK_ROOT, quiet=1, workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not compiled:
        raise PackagingError(f"some modules under {build_dir} do not compile with {runtime} (see above)")


def write_zip(build_dir: Path, zip_path: Path) -> None:
    """The reproducible zip: sorted entries and fixed timestamps, so the same files give the same bytes."""
    paths = []
    for directory, subdirectories, files in os.walk(build_dir):
        subdirectories.sort()
        paths.extend(os.path.join(directory, name) for name in sorted(files))
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in paths:
            info = zipfile.ZipInfo(os.path.relpath(path, build_dir), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Steps of building the Lambda package")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("runtime", help="print RUNTIME and ARCHITECTURE of tools/infrastructure.py")
    find = commands.add_parser("python", help="print the path of the runtime's Python on this machine")
    find.add_argument("--requested", default=os.environ.get("PACKAGE_PYTHON") or None)
    stage = commands.add_parser("stage", help="copy app.py, chalicelib/ and Chalice's runtime into DIR")
    stage.add_argument("build_dir", type=Path)
    stage.add_argument("--chalice-dir", type=Path, required=True, help="an installed chalice package's folder")
    compile_parser = commands.add_parser("compile", help="compile every .py under DIR (run with the runtime's Python)")
    compile_parser.add_argument("build_dir", type=Path)
    archive = commands.add_parser("zip", help="write DIR as a reproducible zip")
    archive.add_argument("build_dir", type=Path)
    archive.add_argument("zip_path", type=Path)
    arguments = parser.parse_args(argv)

    try:
        runtime, architecture = runtime_constants()
        if arguments.command == "runtime":
            print(runtime, architecture)
        elif arguments.command == "python":
            print(find_runtime_python(runtime_version(runtime), arguments.requested))
        elif arguments.command == "stage":
            stage_application(arguments.build_dir, arguments.chalice_dir)
        elif arguments.command == "compile":
            compile_bytecode(arguments.build_dir, runtime)
        elif arguments.command == "zip":
            write_zip(arguments.build_dir, arguments.zip_path)
    except PackagingError as error:
        print(f"package-lambda: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

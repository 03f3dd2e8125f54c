#!/usr/bin/env python3
"""Run the coordinator package's Nix check phase the way `nix build .#hydra-coordinator` does.

What pkgs/hydra-coordinator/package.nix gives the build is read from the package itself,
evaluated with nixpkgs' lib against the nixpkgs stand-ins (tests/package/eval.nix): its
source files, Python dependencies, check inputs, the programs those put on PATH, preCheck
and the test selection pytestCheckHook builds from it. Then, like the build:

1. a separate environment (.venv-nixcheck) holds only those Python packages, at the
   versions nixos-26.05 ships where they are established (mcp 1.x);
2. the wheel is built from a copy of `src` alone (no bench/, no repository around it);
   its requirements are checked against that environment as nixpkgs'
   pythonRuntimeDepsCheck does, it is installed, and `pythonImportsCheck` imports it;
3. the check phase runs in a copy of `src`: PATH holds only the programs of the check
   inputs (and of stdenv), the environment is emptied, preCheck is run, and pytest gets
   nixpkgs pytest-check-hook.sh's arguments (`-m "not (needs_server)"`,
   `--import-mode=importlib`); with unshare it has no network but loopback and does not
   see Debian's PostgreSQL binaries, as in the build sandbox.

Usage: tests/package/check_phase.py [--keep] [-- PYTEST_ARGS...]
Prints SKIPPED and exits 0 when nixpkgs' lib or nix-instantiate is missing.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[2]
COORDINATOR = ROOT / "coordinator"
VENV = Path(os.environ.get("HYDRA_NIXCHECK_VENV", ROOT / ".venv-nixcheck"))
Facts = dict[str, Any]  # tests/package/eval.nix's `facts`
NIX_LIB_CANDIDATES = ("/opt/nixpkgs-lib", "/tmp/nixlib")

# stdenv's own tools (coreutils, findutils, diffutils, gnused, gnugrep, gawk, gnutar,
# gzip, bzip2, xz, gnumake, patch, bash): on PATH in every build.
# fmt: off
STDENV_PROGRAMS = [
    "bash", "sh", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname", "basename",
    "du", "echo", "env", "expr", "false", "head", "id", "install", "ln", "ls", "md5sum", "mkdir",
    "mktemp", "mv", "nproc", "od", "paste", "printf", "pwd", "readlink", "realpath", "rm", "rmdir",
    "seq", "sha256sum", "sleep", "sort", "stat", "tail", "tee", "test", "touch", "tr", "true",
    "uname", "uniq", "wc", "yes", "find", "xargs", "diff", "cmp", "sed", "grep", "egrep", "fgrep",
    "awk", "gawk", "tar", "gzip", "gunzip", "bzip2", "xz", "make", "patch",
]
# fmt: on


def fail(message: str) -> NoReturn:
    print(f"check-phase: {message}", file=sys.stderr)
    sys.exit(1)


def find_nixpkgs_lib() -> Path | None:
    """A directory holding nixpkgs' lib/ (HYDRA_NIXPKGS_LIB, NIX_PATH's nixpkgs, known copies)."""
    candidates = [os.environ.get("HYDRA_NIXPKGS_LIB", "")]
    found = subprocess.run(
        ["nix-instantiate", "--find-file", "nixpkgs"], capture_output=True, text=True, check=False
    )
    if found.returncode == 0:
        candidates.append(found.stdout.strip())
    candidates += NIX_LIB_CANDIDATES
    for candidate in candidates:
        if candidate and (Path(candidate) / "lib" / "default.nix").is_file():
            return Path(candidate)
    return None


def package_facts(lib: Path) -> Facts:
    expr = "(import ./tests/package/eval.nix { lib = import <nixpkgs/lib>; }).facts"
    result = subprocess.run(
        ["nix-instantiate", "-I", f"nixpkgs={lib}", "--eval", "--strict", "--json", "-E", expr],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        fail(f"evaluating pkgs/hydra-coordinator/package.nix failed:\n{result.stderr}")
    facts: Facts = json.loads(result.stdout)
    return facts


def requirements(facts: Facts) -> list[str]:
    """The Python packages of the build: dependencies, build system, check inputs; pinned
    to nixos-26.05's version where it is established."""
    pins = facts["nixos2605Versions"]
    names = sorted(set(facts["dependencies"] + facts["buildSystem"] + facts["checkPython"]))
    return [f"{name}=={pins[name]}" if name in pins else name for name in names]


def quiet(command: list[str]) -> None:
    """Run a pip command; show its output only when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        fail(f"{shlex.join(command)} failed")


def ensure_venv(reqs: list[str]) -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".hydra-stamp"
    want = json.dumps({"python": sys.version, "requirements": reqs})
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    # a fresh environment: only what the package declares, nothing an older stamp installed
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    print(f"check-phase: installing {' '.join(reqs)} into {VENV}", file=sys.stderr)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    quiet([*pip, *reqs])
    stamp.write_text(want)
    return python


def copy_src(files: list[str], dest: Path) -> None:
    for relative in files:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(COORDINATOR / relative, target)


def local_fixed_outputs(facts: Facts) -> dict[str, str]:
    """The placeholder of each fixed-output download -> the same file on this machine."""
    known = {}
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "cl100k_base.tiktoken"
        if path.is_file():
            known["cl100k_base.tiktoken"] = path
    result = {}
    for name, sha256 in facts["fetched"].items():
        local = known.get(name)
        if local is None:
            fail(f"no local copy of {name} (install the coordinator's `tokenizer` extra)")
        if hashlib.sha256(local.read_bytes()).hexdigest() != sha256:
            fail(f"{local} is not the {name} that package.nix fetches (sha256 {sha256})")
        result[f"@fetchurl:{name}@"] = str(local)
    return result


RUNTIME_DEPS_CHECK = """
import importlib.metadata, sys, zipfile
from packaging.metadata import Metadata, parse_email
from packaging.requirements import Requirement
wheel = zipfile.ZipFile(sys.argv[1])
text = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
failed = False
for req in Metadata.from_raw(parse_email(text)[0], validate=False).requires_dist or []:
    if req.marker and not req.marker.evaluate():
        continue
    try:
        version = importlib.metadata.distribution(req.name).version
    except importlib.metadata.PackageNotFoundError:
        print(f"  - {req.name} not installed"); failed = True; continue
    req.specifier.prereleases = True
    if req.specifier and version not in req.specifier:
        print(f"  - {req.name}{req.specifier} not satisfied by version {version}"); failed = True
sys.exit(1 if failed else 0)
"""


def build_and_install(python: Path, src: Path, work: Path) -> None:
    dist = work / "dist"
    quiet(
        [str(python), "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(dist), str(src)]
    )  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    print("check-phase: pythonRuntimeDepsCheck")
    if subprocess.run([str(python), "-c", RUNTIME_DEPS_CHECK, str(wheel)], check=False).returncode:
        fail("the wheel's requirements are not met by the package's dependencies")
    quiet(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
         "--disable-pip-version-check", str(wheel)]
    )  # fmt: skip


def pytest_args(selection: dict[str, list[str]], src: Path) -> list[str]:
    """nixpkgs pytest-check-hook.sh's flags for this selection (pytest config addopts sets
    no --import-mode here, so the hook adds --import-mode=importlib)."""

    def include_exclude(include: list[str], exclude: list[str]) -> str:
        text = f"(({') or ('.join(include)}))" if include else ""
        if exclude:
            text += (" and " if text else "") + f"not ({') and not ('.join(exclude)})"
        return text

    args = ["--import-mode=importlib"]
    for path in selection["enabledTestPaths"]:
        if "::" in path:
            args.append(path)
        else:
            matches = sorted(glob.glob(path, root_dir=src))
            if not matches:
                fail(f"Enabled test path glob {path!r} does not match any paths")
            args += matches
    for path in selection["disabledTestPaths"]:
        if "::" in path:
            args.append(f"--deselect={path}")
        else:
            if not glob.glob(path, root_dir=src):
                fail(f"Disabled test path glob {path!r} does not match any paths")
            args.append(f"--ignore-glob={path}")
    if selection["enabledTests"] or selection["disabledTests"]:
        args += ["-k", include_exclude(selection["enabledTests"], selection["disabledTests"])]
    if selection["enabledTestMarks"] or selection["disabledTestMarks"]:
        marks = include_exclude(selection["enabledTestMarks"], selection["disabledTestMarks"])
        args += ["-m", marks]
    for flags in selection["pytestFlagsArray"]:
        args += shlex.split(flags)
    args += selection["pytestFlags"]
    return args


def tool_dir(facts: Facts, python: Path, work: Path) -> Path:
    """PATH of the build: python, the programs of the check inputs, stdenv's tools."""
    bindir = work / "path"
    bindir.mkdir()
    venv_bin = python.parent
    for name in ("python", "python3"):
        (bindir / name).symlink_to(venv_bin / name)
    host_path = os.environ.get("PATH", "")
    for program in facts["checkPrograms"]:
        # a Python package's program from the environment, any other from this machine
        found: str | Path | None = venv_bin / program
        if not (venv_bin / program).exists():
            found = shutil.which(program, path=host_path.replace(f"{venv_bin}:", ""))
        if found is None:
            fail(f"{program} (a program of the check inputs) is not installed here")
        (bindir / program).symlink_to(found)
    for program in STDENV_PROGRAMS:
        found = shutil.which(program, path="/usr/bin:/bin")
        if found and not (bindir / program).exists():
            (bindir / program).symlink_to(found)
    return bindir


def isolation() -> tuple[list[str], str]:
    """A command prefix that gives the run no network but loopback and hides Debian's
    PostgreSQL server binaries, and a note for the log."""
    unshare, ip, mount = (shutil.which(p) for p in ("unshare", "ip", "mount"))
    if not unshare or not ip or not mount:
        return [], "not isolated (needs unshare, ip and mount)"
    setup = f"{shlex.quote(ip)} link set lo up || exit 97; "
    if os.path.isdir("/usr/lib/postgresql"):
        setup += f"{shlex.quote(mount)} -t tmpfs none /usr/lib/postgresql || exit 97; "
    sh = shutil.which("sh") or "/bin/sh"
    prefix = [unshare, "--net", "--mount", "--map-root-user", sh, "-c", setup + 'exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "/bin/true"], capture_output=True, env={}, check=False)
    if probe.returncode != 0:
        return [], "not isolated (unshare is not permitted here)"
    return prefix, "no network but loopback, no PostgreSQL binaries"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the build directory")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    options = parser.parse_args()

    if not shutil.which("nix-instantiate"):
        print("SKIPPED: nix-instantiate is not installed (apt-get install nix-bin)")
        return
    lib = find_nixpkgs_lib()
    if lib is None:
        print("SKIPPED: nixpkgs lib not found (set HYDRA_NIXPKGS_LIB=DIR)")
        return

    facts = package_facts(lib)
    if not facts["doCheck"]:
        fail("package.nix has doCheck = false: the build would run no tests")
    reqs = requirements(facts)
    python = ensure_venv(reqs)
    placeholders = local_fixed_outputs(facts)

    work = Path(tempfile.mkdtemp(prefix="hydra-nixcheck-"))
    try:
        src = work / "source"
        copy_src(facts["srcFiles"], src)
        build_and_install(python, src, work)
        for module in facts["pythonImportsCheck"]:
            subprocess.run([str(python), "-c", f"import {module}"], cwd=work, check=True)
        print(f"check-phase: pythonImportsCheck {' '.join(facts['pythonImportsCheck'])}: ok")

        pre_check = facts["preCheck"]
        for placeholder, path in placeholders.items():
            pre_check = pre_check.replace(placeholder, path)
        if "@fetchurl:" in pre_check:
            fail(f"preCheck uses a download this script does not know: {pre_check}")
        build_tmp = work / "build"
        build_tmp.mkdir()
        env = {
            "PATH": str(tool_dir(facts, python, work)),
            "HOME": "/homeless-shelter",
            "TMPDIR": str(build_tmp),
            "TMP": str(build_tmp),
            "TEMP": str(build_tmp),
            "TEMPDIR": str(build_tmp),
            "NIX_BUILD_TOP": str(build_tmp),
            "SOURCE_DATE_EPOCH": "315532800",
        }
        args = pytest_args(facts["pytest"], src) + options.pytest_args
        script = f"set -e\n{pre_check}\nexec pytest {shlex.join(args)}\n"
        prefix, note = isolation()
        pins = ", ".join(f"{k} {v}" for k, v in facts["nixos2605Versions"].items())
        print(f"check-phase: pytest {shlex.join(args)}")
        print(f"check-phase: {note}; PATH: {' '.join(sorted(facts['checkPrograms']))}; {pins}")
        sys.stdout.flush()
        result = subprocess.run([*prefix, "bash", "-c", script], cwd=src, env=env, check=False)
        if result.returncode == 97:
            fail("setting up the isolated namespace failed")
        sys.exit(result.returncode)
    finally:
        if options.keep:
            print(f"check-phase: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

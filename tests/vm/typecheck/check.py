#!/usr/bin/env python3
"""Check the VM tests (tests/vm/*.nix) as nixpkgs' test framework does before it runs them.

For each test, without nixpkgs (tests/vm/typecheck/eval.nix, with nixpkgs' lib):

1. the file is evaluated as a test module of `pkgs.testers.runNixOSTest`, with the arguments
   the flake passes: a module that does not take `...` fails as it would on a real machine;
   nodes are evaluated over the NixOS option stand-ins where the script reads them, and each
   node's coordinator credentials and assertions are checked (a store path fails);
2. the test script is type-checked with mypy as the driver does (`mypy --no-implicit-optional`
   on the script with typed globals prepended: prelude.py, one `name: Machine;` per machine,
   `vlanN: VLan`), against a typed stand-in of the driver's API (stubs/test_driver);
3. the script is linted for undefined and unused names as the driver's pyflakes run does
   (ruff's pyflakes rules, with the machines and driver symbols as builtins).

Usage: tests/vm/typecheck/check.py [TEST.nix ...]   (default: every tests/vm/*.nix)
Prints SKIPPED and exits 0 when nixpkgs' lib or nix-instantiate is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
VM_TESTS = ROOT / "tests" / "vm"
NIX_LIB_CANDIDATES = ("/opt/nixpkgs-lib", "/tmp/nixlib")

# What the driver's test_symbols() puts in a script's globals besides machines and VLANs.
DRIVER_SYMBOLS = [
    "start_all", "test_script", "machines", "machines_qemu", "machines_nspawn", "vlans",
    "driver", "log", "os", "create_machine", "subtest", "run_tests", "join_all", "retry",
    "serial_stdout_off", "serial_stdout_on", "polling_condition", "BaseMachine", "t", "debug",
]  # fmt: skip


def find_nixpkgs_lib() -> Path | None:
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


def pythonize(name: str) -> str:
    """The driver's Python name of a machine (hydra-storage -> hydra_storage)."""
    return re.sub(r"^[^A-Za-z_]|[^A-Za-z0-9_]", "_", name)


def evaluate(lib: Path, test: Path) -> tuple[dict[str, Any] | None, str]:
    expr = f"import {HERE / 'eval.nix'} {{ lib = import <nixpkgs/lib>; file = {test}; }}"
    result = subprocess.run(
        ["nix-instantiate", "-I", f"nixpkgs={lib}", "--eval", "--strict", "--json", "-E", expr],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None, result.stderr.strip()
    evaluated: dict[str, Any] = json.loads(result.stdout)
    return evaluated, ""


def machine_names(evaluated: dict[str, Any]) -> list[str]:
    names = [pythonize(n) for n in evaluated["machines"] + evaluated["containers"]]
    # the driver also calls a single machine `machine`
    if len(names) == 1 and "machine" not in names:
        names.append("machine")
    return names


def typecheck(evaluated: dict[str, Any], work: Path) -> tuple[bool, str]:
    hints = [f"{name}: Machine;" for name in machine_names(evaluated)]
    hints += [f"vlan{nr}: VLan;" for nr in evaluated["vlans"]]
    script = work / "testScriptWithTypes"
    prelude = (HERE / "prelude.py").read_text()
    script.write_text(prelude + "\n" + "\n".join(hints) + "\n" + evaluated["script"])
    config = work / "mypy.ini"
    config.write_text("[mypy]\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", "/dev/null",
         "--no-implicit-optional", "--pretty", "--no-color-output", str(script)],
        cwd=work,
        env={**os.environ, "MYPYPATH": str(HERE / "stubs")},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    return result.returncode == 0, result.stdout + result.stderr


def lint(evaluated: dict[str, Any], work: Path) -> tuple[bool, str]:
    ruff = shutil.which("ruff")
    if ruff is None:
        return False, "ruff is not installed (it is in the coordinator's `test` extra)"
    script = work / "test-script.py"
    script.write_text(evaluated["script"])
    builtins = machine_names(evaluated) + [f"vlan{nr}" for nr in evaluated["vlans"]]
    builtins += DRIVER_SYMBOLS
    result = subprocess.run(
        [ruff, "check", "--isolated", "--no-cache", "--select", "F", "--output-format", "concise",
         "--config", f"builtins = {json.dumps(builtins)}", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    return result.returncode == 0, result.stdout + result.stderr


def check(lib: Path, test: Path) -> bool:
    label = test.relative_to(ROOT)
    evaluated, error = evaluate(lib, test)
    if evaluated is None:
        print(f"FAIL {label}: does not evaluate as a test module\n{indent(error)}")
        return False
    problems = []
    for flag in ("skipTypeCheck", "skipLint"):
        if evaluated[flag]:
            problems.append(f"sets {flag}: the driver's checks must run")
    for node, facts in evaluated["nodes"].items():
        problems += [f"node {node}: failed assertion: {m}" for m in facts["failedAssertions"]]
    with tempfile.TemporaryDirectory(prefix="hydra-vmcheck-") as tmp:
        typed, output = typecheck(evaluated, Path(tmp))
        if not typed:
            problems.append(f"mypy (as the test driver runs it):\n{indent(output)}")
        clean, output = lint(evaluated, Path(tmp))
        if not clean:
            problems.append(f"lint (as the test driver's pyflakes):\n{indent(output)}")
    if problems:
        print(f"FAIL {label}:")
        for problem in problems:
            print(indent(problem))
        return False
    machines = ", ".join(machine_names(evaluated))
    print(f"ok   {label} ({evaluated['name']}: {machines}; evaluates, mypy, lint)")
    return True


def readme_modules() -> list[str]:
    """`self.nixosModules.<name>` in tests/vm/README.md that the flake does not export."""
    readme = VM_TESTS / "README.md"
    if not readme.exists():
        return []
    modules = ROOT / "modules"
    exported = {p.stem for p in modules.glob("*.nix")}
    exported |= {p.parent.name for p in modules.glob("*/default.nix")} | {"default"}
    named = set(re.findall(r"self\.nixosModules\.([A-Za-z0-9_-]+)", readme.read_text()))
    return sorted(named - exported)


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())


def main() -> None:
    if not shutil.which("nix-instantiate"):
        print("SKIPPED: nix-instantiate is not installed (apt-get install nix-bin)")
        return
    lib = find_nixpkgs_lib()
    if lib is None:
        print("SKIPPED: nixpkgs lib not found (set HYDRA_NIXPKGS_LIB=DIR)")
        return
    tests = [Path(a).resolve() for a in sys.argv[1:]] or sorted(VM_TESTS.glob("*.nix"))
    if not tests:
        print("no tests/vm/*.nix", file=sys.stderr)
        sys.exit(1)
    results = [check(lib, test) for test in tests]
    missing = readme_modules()
    if missing:
        print(f"FAIL tests/vm/README.md names modules the flake does not export: {missing}")
    sys.exit(0 if all(results) and not missing else 1)


if __name__ == "__main__":
    main()

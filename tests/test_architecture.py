"""The layout is the architecture: stage packages never import `flows/` or `benchmarks/`; the bento ships no study."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("features", "models", "serving", "monitoring", "recflow")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", STAGES)
def test_stage_packages_never_import_flows_or_benchmarks(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path == ROOT / "recflow" / "cli.py":
            continue  # the command line is the one entry point that reaches flows and benchmarks
        for module in _imported_modules(path):
            if module.split(".")[0] in ("flows", "benchmarks"):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_the_bento_ships_no_benchmark_code():
    from serving.package import BENTO_INCLUDE

    assert BENTO_INCLUDE, "the bento must include the service's code"
    assert not [p for p in BENTO_INCLUDE if p.startswith(("benchmarks", "flows", "tests"))]
    shipped = {p.split("/")[0] for p in BENTO_INCLUDE}
    assert shipped <= {"serving", "models", "features", "recflow"}

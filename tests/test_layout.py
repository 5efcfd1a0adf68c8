"""The library's shape: stage packages re-export their public names, imports run one way, and
Prefect stays in the CLI. Read from the source, so a new import that breaks the rule fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "modelcycle"
# Lowest first: a module may import its own layer and the layers before it, never one after.
LAYERS = [
    {"config", "settings", "errors", "utils"},
    {"logstore"},
    {"data"},
    {"evaluation"},
    {"training"},
    {"gate"},
    {"artifacts"},
    {"registry"},
    {"monitoring"},
    {"reports"},
    {"serving"},
    {"records"},
    {"cli"},
]
STAGES = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _layer(unit: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if unit in names)


def _unit(path: Path) -> str:
    """The package (or top-level module) a file belongs to."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[str]:
    """Every `modelcycle...` and top-level module name imported anywhere in the file."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "modelcycle":
                names += [f"modelcycle.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def _sources() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in _sources()}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path: Path) -> None:
    own = _unit(path)
    for name in _imports(path):
        if not name.startswith("modelcycle."):
            continue
        target = name.split(".")[1]
        assert _layer(target) <= _layer(own), f"{own} imports {name}, a layer above it"
        if target != own and len(name.split(".")) > 2:
            assert not name.split(".")[2].startswith("_"), (
                f"{own} reaches into the private module {name}; import from modelcycle.{target}"
            )


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_prefect_is_imported_only_by_the_cli(path: Path) -> None:
    if _unit(path) == "cli":
        return
    prefect = [n for n in _imports(path) if n == "prefect" or n.startswith("prefect.")]
    assert not prefect, f"{path.name} imports {prefect}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_packages_export_their_public_names(stage: str) -> None:
    module = importlib.import_module(f"modelcycle.{stage}")
    exported = getattr(module, "__all__", None)
    assert exported, f"modelcycle.{stage} declares no __all__"
    for name in exported:
        assert hasattr(module, name), f"modelcycle.{stage}.{name} is in __all__ but not defined"
    private = [p.stem for p in (PACKAGE / stage).glob("*.py") if p.name != "__init__.py"]
    assert all(m.startswith("_") for m in private), f"public modules in {stage}: {private}"

"""The package as installed: one import namespace, layers that import one way, no cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> package it installs as (pyproject.toml [tool.setuptools.package-dir])
PACKAGE_DIRS = {"mtsnn": REPO / "mtsnn", "mtsnn.hw_model": REPO / "hw_model", "mtsnn.toolchain": REPO / "toolchain",
                "mtsnn.export": REPO / "export"}
LAYERS = ["mtsnn.hw_model", "mtsnn.toolchain", "mtsnn.export", "mtsnn"]  # each may import only those before it
HW_MODEL_THIRD_PARTY = {"numpy", "array_api_compat", "threadpoolctl", "tomli"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if package == "mtsnn" and parts and parts[0] in ("hw_model", "toolchain", "export"):
                continue
            modules[".".join([package, *parts])] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, at any depth of the file (lazy imports in functions too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _layer(module: str) -> str | None:
    for layer in LAYERS[:-1]:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "mtsnn" if module == "mtsnn" or module.startswith("mtsnn.") else None


def test_layers_import_one_way():
    modules = _modules()
    problems = []
    for name, path in modules.items():
        mine = LAYERS.index(_layer(name))
        for imported in _imports(name, path):
            layer = _layer(imported)
            if layer is not None and LAYERS.index(layer) > mine:
                problems.append(f"{name} imports {imported} (layer {layer} sits above {_layer(name)})")
    assert not problems, "\n".join(problems)


def test_hw_model_uses_numpy_and_the_standard_library_only():
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for name, path in _modules().items():
        if _layer(name) != "mtsnn.hw_model":
            continue
        for imported in _imports(name, path):
            top = imported.split(".")[0]
            if top not in stdlib and top not in HW_MODEL_THIRD_PARTY and top != "mtsnn" and top != "__future__":
                problems.append(f"{name} imports {imported}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: {m for m in _imports(name, path) if m in modules and m != name} for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of the design
    for name in graph:
        graph[name] = {m for m in graph[name] if not (name in LAYERS and m.startswith(name + "."))}
    state, stack, cycles = {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_every_hw_model_module_imports_with_torch_blocked():
    names = sorted(name for name in _modules() if _layer(name) == "mtsnn.hw_model")
    code = textwrap.dedent(f"""
        import importlib, sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        for name in {names!r}:
            importlib.import_module(name)
        import mtsnn  # the top package too: its verbs import torch only when called
        assert sys.modules["torch"] is None and "onnx" not in sys.modules
        print("ok", len({names!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "ok" and int(proc.stdout.split()[1]) >= 15


def test_the_built_wheel_installs_one_top_level_package(tmp_path):
    """Build the wheel as pip would and list it: nothing but mtsnn/ and its dist-info."""
    import shutil

    source = tmp_path / "src"  # build from a copy: an in-tree build would leave build/ in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv*", ".git", "runs", "build", "*.egg-info",
                                                                   "__pycache__", ".hypothesis", "bench"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("mtsnn-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top_level = zf.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
    tops = {name.split("/")[0] for name in names}
    assert top_level == ["mtsnn"]
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mtsnn"}
    for expected in ("mtsnn/api.py", "mtsnn/cli.py", "mtsnn/toolchain/model.py", "mtsnn/hw_model/simulator.py",
                     "mtsnn/export/pipeline.py", "mtsnn/hw_model/targets/loihi.toml",
                     "mtsnn/hw_model/schema/core-v1.schema.json"):
        assert expected in names, expected
    # installed on its own (no repository on the path), it imports as mtsnn.*
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = "import mtsnn, mtsnn.hw_model.simulator, mtsnn.toolchain.arch, mtsnn.export.artifacts; print(mtsnn.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(target))


def test_the_export_subpackage_is_also_the_api_verb():
    import mtsnn
    import mtsnn.export.pipeline  # importing a submodule must not replace the callable package

    assert callable(mtsnn.export) and mtsnn.export.pipeline.export_checkpoint
    assert set(mtsnn.__all__) >= {"train", "resume", "evaluate", "export", "simulate", "validate", "list_targets"}


def test_docs_stand_alone():
    """Nothing a user reads points outside the repository (the team's ../shared is not shipped)."""
    readable = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "bench").glob("*.md"))]
    readable += sorted((REPO / "hw_model" / "targets").glob("*.toml"))
    for folder in PACKAGE_DIRS.values():
        readable += sorted(folder.rglob("*.py"))
    offenders = []
    for path in readable:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "../shared" in line or "hw_facts" in line or "DESIGN.md" in line or "shared/data" in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)

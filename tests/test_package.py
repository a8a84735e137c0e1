"""The package's shape: one-way imports without cycles or private names, functions of at most
60 lines, an installed (non-editable) dacl that runs with its shipped defaults from any folder,
and docs that name only files the repository has."""

from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dacl

PACKAGE = Path(dacl.__file__).parent
REPO = PACKAGE.parent
METHOD = REPO / "docs" / "method.md"

#: Import layers: a module may import from its own layer or lower ones only.
LAYERS = {
    "dacl.errors": 0,
    "dacl.classes": 0,
    "dacl.defaults": 0,
    "dacl.paths": 0,
    "dacl.checkpoint": 0,
    "dacl.outputs": 0,
    "dacl.usage": 0,
    "dacl.loss": 1,
    "dacl.diagnostics": 1,
    "dacl.model": 1,
    "dacl.module": 2,
    "dacl.data": 2,
    "dacl.viz": 2,
    "dacl.pictures": 2,
    "dacl.callbacks": 3,
    "dacl.report": 3,
    "dacl.pretrained": 3,
    "dacl.predictor": 3,
    "dacl.export": 3,
    "dacl.cli": 4,
    "dacl.predict": 4,
    "dacl.demo": 4,
    "dacl.analysis": 4,
    "dacl.teacher": 4,
    "dacl.ablate": 5,
    "dacl.__main__": 6,
}


def _layer(module: str) -> int:
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} has no layer: add it to LAYERS")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """(imported dacl module, imported names) for every import in the file, lazy ones too."""
    out = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("dacl")]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{target}" if target else base
            if target.startswith("dacl"):
                out.append((target, [a.name for a in node.names]))
    return out


def test_imports_run_one_way_without_cycles_or_private_names():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "dacl":  # the package facade re-exports the API; nothing inside imports it
            continue
        graph[name] = set()
        for target, names in _imports(path, name):
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if not submodules:  # from dacl.x import names
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{name} imports private {private} from {target}"
            for t in submodules or [target]:  # from dacl import viz: the module itself
                assert t != "dacl", f"{name} imports the package facade"
                assert _layer(t) <= _layer(name), f"{name} (layer {_layer(name)}) imports {t}"
                if t != name:
                    graph[name].add(t)

    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


#: The longest function dacl may hold, in lines (signature and docstring included).
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.slow
def test_installed_package_runs_a_copied_experiment_with_the_shipped_defaults(tmp_path):
    site, work, src = tmp_path / "site", tmp_path / "empty", tmp_path / "src"
    work.mkdir()
    # a copy of the project, so the build leaves nothing in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "dacl", src / "dacl", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(src)], check=True, timeout=600)
    shutil.copy(REPO / "experiments" / "exp3.yaml", work / "exp3.yaml")
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import dacl; print(dacl.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(site))
    # the report's and the ablation's templates are package data, installed with the code
    for name in ("report.md", "report_attention.md", "ablation.md", "attention.md"):
        assert (site / "dacl" / "templates" / name).is_file(), name
    # so are the shipped models: their configs and weights
    for name in ("dacl_fer2013", "dacl_fer2013_small"):
        for suffix in (".json", ".safetensors"):
            assert (site / "dacl" / "weights" / f"{name}{suffix}").is_file(), name
    out = subprocess.run(
        [sys.executable, "-m", "dacl.cli", "fit", "--config", "exp3.yaml", "--print_config"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    # the shared defaults: checkpoint plugin, callbacks, method.md §4 optimizer, and exp3's own
    for text in ("dacl.checkpoint.AtomicCheckpointIO", "dacl.callbacks.ConfusionMatrixLogger"):
        assert text in out.stdout
    assert "weight_decay: 0.0005" in out.stdout and "name: exp3" in out.stdout


def test_every_method_citation_names_a_section_of_docs_method_md():
    headings = re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", METHOD.read_text(), flags=re.M)
    cited = {
        (path.relative_to(REPO), number)
        for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.yaml"), *PACKAGE.rglob("*.md")]
        for number in re.findall(r"method\.md §(\d+(?:\.\d+)*)", path.read_text())
    }
    assert cited, "dacl cites no section of docs/method.md"
    missing = sorted(str(c) for c in cited if c[1] not in headings)
    assert not missing, f"cited sections that docs/method.md lacks: {missing}"


def test_every_file_the_docs_name_is_in_the_repository():
    """A path the README or a results page quotes (`results/...`, `docs/...`) must be there: a
    measurement whose file stayed on a machine that was not kept says so instead."""
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "results").rglob("*.md")]
    quoted = {
        (page.relative_to(REPO), path)
        for page in pages
        for path in re.findall(
            r"`((?:results|docs|benchmarks|experiments|tests|dacl)/[\w./-]+)`", page.read_text()
        )
    }
    assert len(quoted) > 50, "the pattern no longer finds the docs' file references"
    missing = sorted(f"{page}: {path}" for page, path in quoted if not (REPO / path).exists())
    assert not missing, f"files the docs name but the repository lacks: {missing}"


def test_no_private_name_of_lightning_torch_or_jsonargparse_is_used():
    """A private name can change in any release: dacl overrides and calls public API only.
    Flagged: ``obj._name`` for a ``_name`` dacl does not define itself, a private name imported
    from another package, and a method of a dacl class that overrides a third-party private."""
    trees = {path: ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py")}
    own = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
    private = re.compile(r"_(?!_)\w*$")  # _name, not __dunder__
    used = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and private.match(node.attr)
                and node.attr not in own
            ):
                used.append(f"{path.name}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("dacl"):
                used += [
                    f"{path.name}:{node.lineno} {a.name}"
                    for a in node.names
                    if private.match(a.name)
                ]
    assert not used, f"private names of other packages: {used}"
    for name in _modules():
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != name:
                continue
            for attr, value in vars(cls).items():
                if not callable(value):  # e.g. ABCMeta's _abc_impl: no method of dacl's
                    continue
                bases = [b for b in cls.__mro__[1:] if not b.__module__.startswith("dacl")]
                if private.match(attr) and any(hasattr(b, attr) for b in bases):
                    used.append(f"{name}.{cls.__name__}.{attr}")
    assert not used, f"overrides of other packages' private methods: {used}"


def test_the_readmes_own_code_example_runs(tmp_path, monkeypatch, capsys):
    """README "In your own code": its first Python block, as it stands, in a fresh folder —
    pytorch_lightning's Trainer, the datamodule, a loader of (images, labels) and the shipped
    model's inputs."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## In your own code\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert "import pytorch_lightning as pl" in code and "(images, labels)" in code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["x"].shape == (4, 1, 64, 64) and scope["logits"].shape == (4, 7)
    assert scope["features"].shape == scope["attention"].shape == (4, 512)
    assert scope["trainer"].global_step == 2  # 32 faces in batches of 16
    assert (tmp_path / "data" / "synthetic").is_dir()

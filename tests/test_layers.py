"""The package's layers import only downward, with no cycle, and only config reads the preset
from the environment (see vaecourse/recipes.py and vaecourse/config.py).

The imports are read with ``ast`` (function-level imports included), so that no import escapes
by being deferred. A new module must be placed in :data:`LAYERS` before this test passes.
"""

import ast
from pathlib import Path

import pytest
from notebooks import ROOT

# Lower numbers are lower layers; a module may import its own layer and the layers below.
LAYERS = {
    "vaecourse": 0,  # the package's __init__: re-exports config
    "vaecourse.config": 0,
    "vaecourse.gaussian": 0,
    "vaecourse.estimators": 0,
    "vaecourse.toys": 0,
    "vaecourse.data": 1,
    "vaecourse.data.download": 1,
    "vaecourse.data.mnist": 1,
    "vaecourse.data.colorization": 1,
    "vaecourse.data.trajectories": 1,
    "vaecourse.data.factors": 1,
    "vaecourse.models": 1,
    "vaecourse.models.autoencoder": 1,
    "vaecourse.models.vae": 1,
    "vaecourse.models.classifier": 1,
    "vaecourse.models.cvae": 1,
    "vaecourse.models.colorization": 1,
    "vaecourse.models.forecasting": 1,
    "vaecourse.models.gan": 1,
    "vaecourse.models.vaegan": 1,
    "vaecourse.models.aae": 1,
    "vaecourse.models.flow": 1,
    "vaecourse.models.m2": 1,
    "vaecourse.train": 2,
    "vaecourse.metrics": 2,
    "vaecourse.plotting": 2,
    "vaecourse.sample_quality": 2,
    "vaecourse.disentanglement": 2,
    "vaecourse.recipes": 3,
    "vaecourse.__main__": 4,
    "vaecourse.grading": 4,
    "vaecourse.grading.batch": 4,
    "vaecourse.grading.course": 4,
    "vaecourse.grading.kernel": 4,
    "vaecourse.grading.layout": 4,
    "vaecourse.grading.notebook": 4,
    "vaecourse.grading.sandbox": 4,
    "vaecourse.grading.verdict": 4,
    "benchmarks.common": 4,
    "benchmarks.colorization": 4,
    "benchmarks.forecasting": 4,
    "benchmarks.factors": 4,
    "benchmarks.vae_mnist": 4,
    "benchmarks.beyond": 4,
    "benchmarks.grading": 4,
}

# Files that may read os.environ, and what for.
ENVIRONMENT_READERS = {
    "vaecourse/config.py": "VAECOURSE_PRESET, resolved once into a Preset",
    "vaecourse/data/download.py": "VAECOURSE_DATA, the data cache",
    "vaecourse/grading/course.py": "PATH, so that nbgrader finds the environment's scripts",
    "benchmarks/grading.py": "VAECOURSE_PRESET for the kernels it grades (other processes)",
}


def module_name(path: Path) -> str:
    """``vaecourse/data/mnist.py`` -> ``vaecourse.data.mnist``; a package's ``__init__`` is the
    package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files() -> list[Path]:
    return sorted([*(ROOT / "vaecourse").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def imported_modules(path: Path) -> set[str]:
    """The project modules that ``path`` imports (``from vaecourse.data import mnist`` is the
    module ``vaecourse.data.mnist``; in benchmarks/, ``from common import x`` is
    ``benchmarks.common``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if path.parent.name == "benchmarks" and f"benchmarks.{name}" in LAYERS:
                name = f"benchmarks.{name}"
            while name and name not in LAYERS:  # an attribute of a module: keep the module
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    # "from vaecourse.data import mnist" also names the package vaecourse.data: keep the
    # deepest module only
    return {m for m in out if not any(o.startswith(m + ".") for o in out)} - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in python_files()}


def test_every_module_has_a_layer():
    missing = sorted(set(import_graph()) - set(LAYERS))
    assert not missing, f"place these modules in LAYERS of tests/test_layers.py: {missing}"


def test_imports_only_go_down():
    graph = import_graph()
    upward = [f"{m} (layer {LAYERS[m]}) imports {d} (layer {LAYERS[d]})"
              for m, deps in graph.items() for d in sorted(deps) if LAYERS[d] > LAYERS[m]]
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep, [*stack, dep])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_and_layer_reader_see_what_they_should():
    """The checks above can fail: a planted cycle is found, and a deferred import is read."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert "vaecourse.recipes" in imported_modules(ROOT / "vaecourse" / "__main__.py")
    assert {"vaecourse.config", "vaecourse.train", "vaecourse.metrics",
            "vaecourse.models.vae"} <= imported_modules(ROOT / "vaecourse" / "recipes.py")


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_config_reads_the_environment(path):
    relative = str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text())
    reads = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
             and node.value.id == "os" and node.attr in ("environ", "getenv")]
    if relative in ENVIRONMENT_READERS:
        assert reads, f"{relative} no longer reads the environment: drop it from the list"
    else:
        assert not reads, (f"{relative} reads os.environ (lines {reads}): take the preset as "
                           "an argument (vaecourse.config.preset resolves it once)")

"""The subpackages of triage/ import each other without a cycle, counting every import;
triage/dicom's stages import only the stages before them.

An import inside a function is still an import: a cycle hidden that way means a type
lives in the wrong package. The graph is computed with `ast` from every module under
triage/, module-level, function-level and ``TYPE_CHECKING`` imports alike.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "triage"


def _package_of(module: str) -> str | None:
    """'triage.dicom.scan' -> 'dicom'; top-level modules ('triage.errors') -> 'errors'."""
    parts = module.split(".")
    if parts[0] != "triage" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Subpackage -> the subpackages it imports (itself excluded)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(ROOT.rglob("*.py")):
        source = _package_of(_module_name(path))
        if source is None:
            continue
        graph[source]
        for name in _imports(path):
            target = _package_of(name)
            if target is None or target == source:
                continue
            if (ROOT / target).is_dir() or (ROOT / f"{target}.py").is_file():
                graph[source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_subpackages_of_triage_import_each_other_without_a_cycle():
    graph = import_graph()
    assert {"dicom", "ingest", "model", "train", "registry"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


#: triage/dicom's layers in the order of the flow: the shared top-level modules (""), then
#: one subpackage per stage. A module imports only its own layer and the layers before it.
DICOM_LAYERS = ("", "scan", "select", "pixels", "volume")
DICOM = ROOT / "dicom"


def _dicom_layer(module: str) -> str | None:
    """'triage.dicom.scan.index' -> 'scan'; 'triage.dicom.tags', 'triage.dicom' -> '';
    anything outside triage.dicom -> None."""
    parts = module.split(".")
    if parts[:2] != ["triage", "dicom"]:
        return None
    if len(parts) > 2 and (DICOM / parts[2]).is_dir():
        return parts[2]
    return ""


def dicom_layer_violations() -> list[str]:
    """'importer -> imported' for every import of a later layer of triage/dicom."""
    rank = {layer: n for n, layer in enumerate(DICOM_LAYERS)}
    found = []
    for path in sorted(DICOM.rglob("*.py")):
        module = _module_name(path)
        source = _dicom_layer(module)
        assert source is not None
        for name in sorted(_imports(path)):
            target = _dicom_layer(name)
            if target is not None and rank[target] > rank[source]:
                found.append(f"{module} ({source or 'shared'}) -> {name} ({target})")
    return found


def test_dicom_layers_name_every_subpackage_of_triage_dicom():
    subpackages = {p.parent.name for p in DICOM.glob("*/__init__.py")}
    assert subpackages == set(DICOM_LAYERS) - {""}


def test_dicom_layer_of_a_module():
    assert _dicom_layer("triage.dicom") == ""
    assert _dicom_layer("triage.dicom.tags.LOADER_TAGS") == ""
    assert _dicom_layer("triage.dicom.scan") == "scan"
    assert _dicom_layer("triage.dicom.volume.loader.load_series") == "volume"
    assert _dicom_layer("triage.errors") is None


def test_dicom_stages_import_only_the_shared_modules_and_earlier_stages():
    violations = dicom_layer_violations()
    assert not violations, "\n".join(violations)

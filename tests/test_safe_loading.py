"""No code path unpickles arbitrary objects: every ``torch.load`` passes weights_only=True,
and nothing calls pickle/joblib/np.load(allow_pickle=True) on files."""

from __future__ import annotations

import ast
from pathlib import Path

import triage

ROOT = Path(triage.__file__).resolve().parent
UNSAFE = {("pickle", "load"), ("pickle", "loads"), ("joblib", "load"), ("cloudpickle", "load"),
          ("cloudpickle", "loads"), ("dill", "load")}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node


def test_every_torch_load_is_weights_only_and_nothing_unpickles():
    loads, unsafe = [], []
    for path in sorted(ROOT.rglob("*.py")):
        for module, name, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT.parent)}:{call.lineno}"
            keywords = {k.arg: k.value for k in call.keywords}
            if (module, name) == ("torch", "load"):
                loads.append(where)
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(where)
            elif (module, name) in UNSAFE:
                unsafe.append(where)
            elif (module, name) == ("np", "load"):
                flag = keywords.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and not flag.value):
                    unsafe.append(where)
    assert len(loads) >= 2  # the bundle's weights and the training checkpoints
    assert unsafe == []

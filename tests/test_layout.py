"""The package layout keeps its promises (README: Architecture): subpackages by concept that
re-export their modules' names, no module reaching into another's private names, one home
for every exception, for the nodata code and for JSON, and no TensorFlow on import."""

import ast
import importlib
import pkgutil
import subprocess
import sys

import pytest

import glacierkit
from conftest import ROOT

PACKAGE = ROOT / "glacierkit"
SUBPACKAGES = ("data", "io", "ndsi", "unet", "evaluate", "pipeline")


def _sources(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_from(path, node):
    """The absolute module an ImportFrom in ``path`` reads from."""
    if not node.level:
        return node.module or ""
    base = _module_name(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in _sources("glacierkit", "tools", "bench"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = _imported_from(path, node)
                if not (source == "glacierkit" or source.startswith("glacierkit.")):
                    continue
                for alias in node.names:
                    private_module = source.rsplit(".", 1)[-1].startswith("_")
                    if alias.name.startswith("_") and not private_module and \
                            alias.name not in ("_kernels", "_util"):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                         f"{source}.{alias.name}")
    assert not offenders, offenders


def test_every_exception_and_warning_class_lives_in_exceptions():
    elsewhere = []
    for path in _sources("glacierkit"):
        if path.name == "exceptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if any(b.endswith(("Error", "Warning", "Exception")) for b in bases):
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not elsewhere, elsewhere
    from glacierkit import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), (Exception, Warning))


def test_nodata_and_json_have_one_home():
    nodata, dumps = [], []
    for path in _sources("glacierkit"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    node.value.value == 255:
                nodata.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in ("dumps", "dump") and \
                    getattr(node.value, "id", "") == "json":
                dumps.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert nodata == ["glacierkit/_util.py:" + nodata[0].rsplit(":", 1)[-1]], nodata
    assert all(d.startswith("glacierkit/_util.py") for d in dumps), dumps
    assert glacierkit.NODATA == 255


def test_one_json_rule():
    import math

    import numpy as np

    from glacierkit._util import to_json

    value = {"a": np.float32(0.5), "b": [np.int64(3), float("nan"), math.inf],
             "c": np.array([1, 2]), 4: (True, None)}
    assert to_json(value, indent=None) == ('{"a": 0.5, "b": [3, null, null], "c": [1, 2], '
                                           '"4": [true, null]}')


def test_json_file_round_trip(tmp_path):
    from glacierkit._util import read_json, write_json

    path = write_json(tmp_path / "x" / "doc.json", {"k": [1.5, float("nan")]})
    assert read_json(path) == {"k": [1.5, None]}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]  # no temporary left


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_subpackages_re_export_their_modules_names(sub):
    package = importlib.import_module(f"glacierkit.{sub}")
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"glacierkit.{sub}.{info.name}")
        assert getattr(package, info.name) is module
        for name in getattr(module, "__all__", []):
            if name == info.name:  # a function named like its module stays in the module
                continue
            assert getattr(package, name) is getattr(module, name), (sub, info.name, name)
    assert sorted(package.__all__) == package.__all__


def test_every_module_is_reachable_from_the_package():
    for info in pkgutil.walk_packages(glacierkit.__path__, "glacierkit."):
        obj = glacierkit
        for part in info.name.split(".")[1:]:
            obj = getattr(obj, part)
        assert obj.__name__ == info.name
    for name in glacierkit.__all__:
        assert getattr(glacierkit, name) is not None


def test_tests_mirror_the_package():
    for sub in SUBPACKAGES:
        assert list((ROOT / "tests" / sub).glob("test_*.py")), f"tests/{sub}/ is missing"
    assert not list((ROOT / "tests").glob("test_*predict*.py"))  # they live in tests/unet/


def test_import_glacierkit_loads_no_tensorflow():
    code = ("import sys, glacierkit as gk; gk.io; gk.ndsi.sweep; gk.TrainConfig; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]

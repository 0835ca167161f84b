"""The environments agree with pyproject.toml, and CI runs the README's test command."""

import re

import tomllib
import yaml

from conftest import ROOT

# pip name -> conda-forge name, where they differ.
CONDA_NAMES = {}


def _pip_names() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {CONDA_NAMES.get(n, n) for n in (re.split(r"[\[<>=!~; ]", d)[0].lower() for d in deps)}


def _conda_names(path) -> set[str]:
    env = yaml.safe_load(path.read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            names.add(re.split(r"[\[<>=!~ ]", dep)[0].lower())
    return names - {"python", "pip"}


def test_environment_yml_lists_the_pyproject_packages():
    assert _conda_names(ROOT / "environment.yml") == _pip_names()


def test_binder_environment_lists_the_pyproject_packages():
    assert _conda_names(ROOT / "binder" / "environment.yml") == _pip_names()
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install" in post and "--no-deps" in post and "ipykernel install" in post


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_every_module_is_reachable_from_the_package():
    import glacierkit

    modules = {p.stem for p in (ROOT / "glacierkit").glob("*.py") if not p.stem.startswith("_")}
    for name in modules:
        assert getattr(glacierkit, name).__name__ == f"glacierkit.{name}"
    assert modules <= set(glacierkit.__all__)

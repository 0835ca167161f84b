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


def test_a_wheel_from_a_fresh_checkout_holds_every_subpackage(tmp_path):
    """Build a wheel from the tracked files alone (what a fresh clone has) and look inside:
    every subpackage, the band and sample registries, and the console entry point."""
    import shutil
    import subprocess
    import sys
    import zipfile

    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    clone = tmp_path / "clone"
    for rel in filter(None, tracked):
        if (ROOT / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, clone / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path / "dist"), str(clone)], check=True)
    wheel, = (tmp_path / "dist").glob("glacierkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "glacierkit").rglob(
        "__init__.py")}
    assert {"glacierkit", "glacierkit/io", "glacierkit/unet", "glacierkit/pipeline"} <= packages
    for package in packages:
        assert f"{package}/__init__.py" in names, package
    for module in (ROOT / "glacierkit").rglob("*.py"):
        assert module.relative_to(ROOT).as_posix() in names, module
    assert {"glacierkit/sensors.toml", "glacierkit/data/registry.txt"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "glacierkit = glacierkit.pipeline.cli:main" in text


def test_setup_on_a_full_disk_stops_first_with_one_clear_line(tmp_path):
    """CI once failed in pip with 'No space left on device', after a half-made .venv. The
    set-up checks the free space first: one line naming the folder, what it has, and the
    fix, and nothing created."""
    import subprocess
    import sys

    venv = tmp_path / "not" / "yet" / "venv"
    proc = subprocess.run(["make", "-s", "setup", f"VENV={venv}", "MIN_FREE_GB=1e9",
                           f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    err = proc.stderr
    assert f"setting up {venv} needs about 1e+09 GB free" in err
    assert f"but {tmp_path} has" in err and "VENV=/path/with/space" in err
    assert "Traceback" not in err and "Setting up" not in proc.stdout
    assert not (tmp_path / "not").exists()
    # a mistyped limit is named, not a traceback
    proc = subprocess.run(["make", "-s", "setup", f"VENV={venv}", "MIN_FREE_GB=5GB",
                           f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "MIN_FREE_GB='5GB' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "not").exists()

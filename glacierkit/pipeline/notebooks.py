"""The notebooks as steps: their parameters, and running one headlessly with papermill.

:func:`notebook_parameters` reads a notebook's ``parameters`` cell (names, types, defaults,
comments); :func:`check_parameters` refuses unknown names and wrong types, which papermill
only warns about. :func:`execute_notebook` runs a notebook on the glacierkit kernel, keeps
the kernel's own output in a log beside it, and turns a failing cell into one
:class:`~glacierkit.exceptions.StepFailed` error that names the cell.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .._util import CHECKOUT
from ..console import quiet_environment
from ..exceptions import KernelNotFoundError, ParameterError, StepFailed

__all__ = ["notebook_parameters", "check_parameters", "execute_notebook", "NOTEBOOK_DIR", "KERNEL_NAME", "check_kernel", "parse_parameters"]

#: Where the notebooks live (the repository's ``notebooks/``).
NOTEBOOK_DIR = CHECKOUT / "notebooks"
#: The Jupyter kernel the notebooks name in their metadata and papermill runs them with:
#: ``make setup`` registers it in .venv, Binder's postBuild in its environment.
KERNEL_NAME = "glacierkit"


def check_kernel(name: str = KERNEL_NAME) -> None:
    """Raise :class:`KernelNotFoundError`, with the command that fixes it, if ``name`` is
    not a registered Jupyter kernel."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        if os.path.isabs(spec.argv[0]) and not os.path.exists(spec.argv[0]):
            raise NoSuchKernel(name)  # registered from a Python that no longer exists
    except NoSuchKernel:
        raise KernelNotFoundError(
            f"The Jupyter kernel {name!r} the notebooks run with is not registered. Register "
            f"it for this Python with: python -m ipykernel install --sys-prefix --name {name} "
            f"--display-name 'Python ({name})'  (make setup does this)."
        ) from None


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict]:
    """The parameters a notebook declares: ``{name: {"default", "type", "help"}}``."""
    import papermill as pm

    params = pm.inspect_notebook(str(notebook))
    return {k: {"default": v.get("default"), "type": v.get("inferred_type_name"),
                "help": v.get("help", "")} for k, v in params.items()}


def check_parameters(notebook: str | os.PathLike, params: Mapping[str, object]) -> None:
    """Raise :class:`ParameterError` for any name the notebook does not declare."""
    declared = notebook_parameters(notebook)
    if not declared:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'.")
    for name in params:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(
                f"Unknown parameter {name!r} for {Path(notebook).name}.{hint} Valid parameters: "
                f"{sorted(declared)}."
            )


_YAML_TYPES = {list: "a list, e.g. '[a, b]'", dict: "a mapping, e.g. '{a: 1}'",
               bool: "true or false", int: "a whole number", float: "a number"}


def parse_parameters(namespace: dict) -> None:
    """Parse parameters that arrived as text into their declared types, in place.

    ``papermill -p scenes '["alps-s2/aletsch"]'`` injects the text ``'["alps-s2/aletsch"]'``
    (papermill converts only numbers and booleans). A notebook calls this right after its
    parameters cell, with ``globals()``: every parameter annotated ``list``, ``dict``,
    ``bool``, ``int`` or ``float`` in the parameters cell whose value is a ``str`` is read as
    YAML (``[a, b]``, ``'["a"]'``, ``true``, ``0.5``). A text that is not of the declared type
    raises :class:`ParameterError` naming the parameter. Values of the right type, and
    parameters declared ``str``, are left alone.
    """
    import yaml

    for name, declared in dict(namespace.get("__annotations__", {})).items():
        value = namespace.get(name)
        if declared not in _YAML_TYPES or not isinstance(value, str):
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        if declared is float and isinstance(parsed, int) and not isinstance(parsed, bool):
            parsed = float(parsed)
        if declared is list and isinstance(parsed, str):
            parsed = [parsed]  # one scene given as plain text: a list of one
        if not isinstance(parsed, declared) or (declared is int and isinstance(parsed, bool)):
            raise ParameterError(
                f"Parameter {name} is declared {declared.__name__}, but got the text {value!r}. "
                f"Give {_YAML_TYPES[declared]} (papermill: -p {name} VALUE, or -y for YAML)."
            )
        namespace[name] = parsed


def _kernel_manager(stderr, ipc_dir: str):
    """A kernel manager that talks to the kernel over IPC sockets in a private temporary
    folder ``ipc_dir`` (no TCP port, so no "running over TCP without encryption" warning) and sends
    the kernel process's own stderr (TensorFlow/absl C++ logs, IPKernelApp) to ``stderr``.
    What the notebook's cells print or warn still goes into the executed notebook."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = os.path.join(ipc_dir, "k")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["stderr"] = stderr
            kw["env"] = quiet_environment(kw.get("env"))  # no TensorFlow start-up chatter
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike,
                     parameters: Mapping[str, object], cwd: str | os.PathLike | None = None,
                     log_output: bool = False) -> Path:
    """Execute one notebook with papermill; the output appears only on success.

    On failure the partial notebook is kept as ``<output stem>.failed.ipynb`` and
    :class:`StepFailed` carries the failing cell's error. The kernel process's own log
    (not the cells' output, which is in the notebook) goes to ``<output stem>.kernel.log``.
    """
    import papermill as pm

    notebook, output = Path(notebook), Path(output)
    check_parameters(notebook, parameters)
    check_kernel()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    kernel_log = open(output.with_name(f"{output.stem}.kernel.log"), "wb")  # noqa: SIM115
    ipc_dir = tempfile.TemporaryDirectory(prefix="gk-kernel-")
    try:
        pm.execute_notebook(str(notebook), str(tmp), parameters=dict(parameters),
                            kernel_name=KERNEL_NAME, language="python",
                            cwd=str(cwd or notebook.parent), progress_bar=False,
                            log_output=log_output,
                            kernel_manager_class=_kernel_manager(kernel_log, ipc_dir.name))
    except pm.PapermillExecutionError as exc:
        os.replace(tmp, failed)
        raise StepFailed(
            f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"The executed notebook is kept at {failed}."
        ) from None
    except BaseException:
        if tmp.exists():
            os.replace(tmp, failed)
        raise
    finally:
        kernel_log.close()
        ipc_dir.cleanup()
    os.replace(tmp, output)
    if failed.exists():
        failed.unlink()
    return output




_WARNING = re.compile(r"\b(\w*Warning): (.+)")
_GLACIERKIT_WARNING = re.compile(r"^glacierkit: warning: (.+)$", re.MULTILINE)


def notebook_warnings(notebook: str | os.PathLike) -> list[str]:
    """The distinct ``...Warning: message`` lines the cells of an executed notebook wrote
    to stderr, in order (``"UserWarning: ..."``), and glacierkit's logged warnings
    (``glacierkit: warning: ...``, as ``"warning: ..."``)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    found: dict[str, None] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
                for m in _WARNING.finditer(text):
                    found.setdefault(f"{m.group(1)}: {m.group(2).strip()}", None)
                for m in _GLACIERKIT_WARNING.finditer(text):  # glacierkit's logged warnings
                    found.setdefault(f"warning: {m.group(1).strip()}", None)
    return list(found)

"""The forward pass of a model or an ensemble, compiled once for every window shape.

:class:`CompiledForward` is what :func:`glacierkit.unet.predict_scene` calls on each batch
of windows (``predict_on_batch``). It replaces Keras' ``predict_on_batch``, which traces a
graph for every new input shape (and, run member by member, for every member):

* **One graph per architecture, any window shape.** The graph's input signature leaves the
  batch and spatial sizes open, so it is traced once, on the first call, whatever window
  shapes the plan uses. The members of an ensemble (:func:`glacierkit.unet.ensemble`) that
  share an architecture (the same recipe with other seeds) share that one graph: it takes
  the weights as inputs (Keras' ``stateless_call``) and runs once per member. An ensemble
  of three members is traced and optimized once, not three times.
* **One member at a time.** Each member is one call of the graph, and the calls follow
  each other, so only one member's activations are alive at a time: the memory of a
  window is that of one member, as :mod:`glacierkit.unet.windows` assumes.
* **In the compute precision, cast once.** For bfloat16 only the shared template is cast
  (:func:`glacierkit.unet.cast_model`); every member's float32 weights are fed to it.
* **Eager where a trace would be wasted.** Whether a bfloat16 model rounds its inputs to
  bfloat16 anyway (so windows can be assembled in bfloat16) is checked with an eager call
  on a small window, which traces nothing.

* **XLA where it pays.** Batches of at least :data:`XLA_FROM_PIXELS` pixels in float32 on a
  CPU run through the same graph compiled with XLA (``jit_compile``), once per window
  shape: measured on 2 AVX2 cores (the committed U-Net, one member, a 1040 x 1296 window,
  alternating runs in one process), 22% less CPU time and 26% less wall time, since XLA
  fuses the batch normalizations and activations that make large windows memory-bound;
  no gain for 512-px windows, whose activations fit the caches better, and 1.5-4 s to
  compile a shape, so small windows (a command-line call on a small scene) skip it.
  bfloat16 and GPUs were not measured with XLA and do not use it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from ..exceptions import GlacierKitError

log = logging.getLogger(__name__)

__all__ = ["CompiledForward", "architecture_key", "XLA_FROM_PIXELS"]

#: Batches of at least this many pixels (windows x height x width) run XLA-compiled in
#: float32 on a CPU (None: never). Where XLA paid on 2 AVX2 cores: 1.35 Mpx windows, not
#: 0.26 Mpx ones; compiling a window shape takes a few seconds.
XLA_FROM_PIXELS: int | None = 2**19


def architecture_key(model) -> str:
    """A text that is equal for two Keras models exactly when they compute the same function
    of their inputs and weights: the model's config with layer names replaced by their
    position (members of an ensemble differ only in names and weights), plus the shapes
    and dtypes of its weights."""
    index = {layer.name: f"#{i}" for i, layer in enumerate(getattr(model, "layers", []))}

    def norm(obj):
        if isinstance(obj, dict):
            return {k: norm(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [norm(v) for v in obj]
        if isinstance(obj, str):
            return index.get(obj, obj)
        return obj

    try:
        config = model.get_config()
    except Exception:  # noqa: BLE001 - a model without a config shares no graph
        return f"id:{id(model)}"
    config = norm(config)
    if isinstance(config, dict):
        config.pop("name", None)
    shapes = [(tuple(v.shape), str(v.dtype)) for v in model.weights]
    return repr((type(model).__name__, config, shapes))


class _Group:
    """Members with one architecture: the template that runs (cast to the precision) and
    its compiled graph per input dtype."""

    def __init__(self, template, members: list):
        self.template = template
        self.members = members
        self.graphs: dict[str, object] = {}


class CompiledForward:
    """The mean output of ``members`` (one model: its output), compiled once per
    architecture and input dtype, for any batch and window size.

    Parameters
    ----------
    members
        Keras models taking the same inputs (float32 weights): the members of an ensemble,
        or a single model.
    precision
        ``"float32"`` or ``"bfloat16"``: the template of each architecture is cast with
        :func:`glacierkit.unet.cast_model`; outputs are float32.

    Attributes
    ----------
    traces
        How many graphs have been traced (one per architecture and input dtype, and one more
        per architecture where large windows run XLA-compiled).

    Examples
    --------
    >>> fwd = CompiledForward([model])                      # doctest: +SKIP
    >>> fwd.predict_on_batch(np.zeros((2, 64, 96, 5), "float32")).shape  # doctest: +SKIP
    (2, 64, 96, 1)
    """

    def __init__(self, members: Sequence, precision: str = "float32"):
        self.members = list(members)
        if not self.members:
            raise GlacierKitError("Internal error: a forward pass needs at least one model.")
        self.precision = precision
        self.traces = 0
        self._lock = threading.Lock()
        self._groups: list[_Group] | None = None
        self._cpu_only: bool | None = None

    # The graphs are rebuilt after unpickling (TensorFlow functions cannot be pickled).
    def __getstate__(self) -> dict:
        return {"members": self.members, "precision": self.precision}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["members"], state["precision"])

    @property
    def layers(self) -> list:
        """The members, as an ensemble's sub-models (for the walks over a model's layers)."""
        return self.members

    def _grouped(self) -> list[_Group]:
        if self._groups is None:
            from .artifact import cast_model

            by_key: dict[str, list] = {}
            for member in self.members:
                by_key.setdefault(architecture_key(member), []).append(member)
            groups = []
            for members in by_key.values():
                template = cast_model(members[0], self.precision)
                shapes = [tuple(v.shape) for v in template.weights]
                if any([tuple(v.shape) for v in m.weights] != shapes for m in members):
                    # pragma: no cover - equal keys have equal weights
                    raise GlacierKitError("Internal error: members of one architecture "
                                          "have different weights.")
                groups.append(_Group(template, members))
            self._groups = groups
            if len(self.members) > 1:
                log.info("Ensemble of %d members in %d compiled graph(s)", len(self.members),
                         len(groups))
        return self._groups

    def _xla(self, x: np.ndarray) -> bool:
        """Whether this batch runs XLA-compiled (see :data:`XLA_FROM_PIXELS`)."""
        if XLA_FROM_PIXELS is None or self.precision != "float32" or x.ndim != 4 or \
                x.shape[0] * x.shape[1] * x.shape[2] < XLA_FROM_PIXELS:
            return False
        if self._cpu_only is None:
            import tensorflow as tf

            self._cpu_only = not tf.config.list_physical_devices("GPU")
        return self._cpu_only

    def _graph(self, group: _Group, dtype, xla: bool = False):
        import tensorflow as tf

        name = np.dtype(dtype).name + ("-xla" if xla else "")
        with self._lock:
            if name not in group.graphs:
                template = group.template
                channels = template.input_shape[-1]

                def run(x, trainable, non_trainable):
                    self.traces += 1  # runs only while tracing
                    y, _ = template.stateless_call(trainable, non_trainable, x,
                                                   training=False)
                    if isinstance(y, (list, tuple)):
                        if len(y) != 1:
                            raise GlacierKitError(
                                f"The model has {len(y)} outputs; glacierkit predicts with "
                                "single-output models (the glacier probability).")
                        y = y[0]
                    return tf.cast(y, "float32")

                spec = [tf.TensorSpec([None, None, None, channels], tf.as_dtype(dtype)),
                        [tf.TensorSpec(v.shape, v.dtype) for v in template.trainable_variables],
                        [tf.TensorSpec(v.shape, v.dtype)
                         for v in template.non_trainable_variables]]
                group.graphs[name] = tf.function(run, input_signature=spec,
                                                 jit_compile=True if xla else None)
            return group.graphs[name]

    def predict_on_batch(self, x) -> np.ndarray:
        """The (mean) output for a batch ``(N, h, w, C)`` (float32 or bfloat16), as float32."""
        x = np.asarray(x)
        xla = self._xla(x)
        total, n = None, 0
        for group in self._grouped():
            graph = self._graph(group, x.dtype, xla)
            for member in group.members:
                # the member's current weights, read now (a model trained further after the
                # predictor was made predicts with its new weights)
                y = graph(x, [v.value for v in member.trainable_variables],
                          [v.value for v in member.non_trainable_variables]).numpy()
                total = y if total is None else total + y  # as keras' Average adds them
                n += 1
        return total if n == 1 else total / np.float32(n)

    def eager(self, x: np.ndarray) -> list[np.ndarray]:
        """The output of the first member of each architecture, computed eagerly (op by op:
        no graph is traced), in the compute precision. For checks on small windows."""
        return [np.asarray(group.template(x, training=False), dtype="float32")
                for group in self._grouped()]

"""Training data on the fly: the tf.data pipeline and its augmentations.

:func:`training_dataset` feeds the training tiles in random order with the dihedral
flips/rotations (:func:`dihedral`) and, as the recipe asks, reflectance-space photometric
changes (:func:`photometric_augment`), synthetic lakes labelled not glacier
(:func:`lake_augment`) and cast shadows (:func:`shadow_augment`). The augmentations act on
reflectance, before the features are computed (:func:`tf_features`, the TensorFlow twin of
:func:`glacierkit.unet.feature_stack`), so index channels stay consistent with the bands.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ParameterError
from .features import InputSpec
from .tiles import Patches

__all__ = ["dihedral", "training_dataset", "tf_features", "photometric_augment", "lake_augment", "shadow_augment", "haze_augment", "ROLE_WAVELENGTHS"]


# --- tf.data -------------------------------------------------------------------------------

def dihedral(image, k):
    """The ``k``-th (0..7) element of the dihedral group of the square applied to ``image``.

    ``k % 4`` quarter turns, then a left-right flip when ``k >= 4``; ``image`` is
    ``(h, w, c)`` (a tf tensor or numpy array). ``k = 0`` is the identity.
    """
    import tensorflow as tf

    out = tf.image.rot90(image, k=k % 4)
    return tf.cond(k >= 4, lambda: tf.image.flip_left_right(out), lambda: out)


#: Nominal centre wavelength (micrometres) per role, for the haze term of the photometric
#: augmentation (path radiance falls off roughly as wavelength ** -2).
ROLE_WAVELENGTHS = {"coastal": 0.443, "blue": 0.49, "green": 0.56, "red": 0.665,
                    "rededge1": 0.705, "rededge2": 0.74, "rededge3": 0.783, "nir": 0.865,
                    "swir1": 1.61, "swir2": 2.2}


def tf_features(raw, roles, spec: InputSpec, medians=None):
    """The model's normalized input channels from reflectance by role, in TensorFlow.

    The same computation as :func:`glacierkit.unet.feature_stack` followed by
    :func:`glacierkit.unet.normalize` (NaN becomes 0), so that tiles can be augmented in
    reflectance space on the fly. ``raw`` is ``(..., len(roles))``; ``medians`` the
    per-band scene medians for ``normalization="scene"``.
    """
    import tensorflow as tf

    from .features import ND_CHANNELS

    roles = list(roles)
    chans = []
    for j, band in enumerate(spec.bands):
        v = raw[..., roles.index(band)]
        if spec.normalization == "scene":
            v = v / medians[..., j]
        chans.append(v)
    nan = tf.constant(float("nan"), raw.dtype)
    for name in spec.extra:
        a, b = (raw[..., roles.index(r)] for r in ND_CHANNELS[name])
        den = a + b
        nd = tf.where(tf.equal(den, 0.0), nan, (a - b) / tf.where(tf.equal(den, 0.0), 1.0, den))
        chans.append(tf.clip_by_value(nd, -1.0, 1.0))
    x = tf.stack(chans, axis=-1)
    x = (x - tf.constant(spec.mean, raw.dtype)) / tf.constant(spec.std, raw.dtype)
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


def photometric_augment(raw, roles, strength: float, seed):
    """Random gain and offset of reflectance tiles ``(h, w, len(roles))``, per tile.

    ``r' = g * g_b * r + o_b``: a global gain ``g`` (illumination, slope; log-uniform,
    0.67-1.5 at strength 1), a per-band gain ``g_b`` (calibration and band-pass differences
    between sensors, +-10 %), and a per-band offset ``o_b`` made of a haze term
    ``h (0.49 / lambda_b) ** 2`` (path radiance, as between surface and top-of-atmosphere
    reflectance; ``h`` in [-0.02, 0.08]) plus +-0.01 of noise. ``seed`` is a stateless seed
    pair.
    """
    import tensorflow as tf

    n = len(roles)
    lam = tf.constant([ROLE_WAVELENGTHS.get(r, 1.0) for r in roles], tf.float32)
    u = tf.random.stateless_uniform([2 * n + 2], seed=seed, minval=-1.0, maxval=1.0)
    g = tf.exp(0.4 * strength * u[0])
    gb = tf.exp(0.1 * strength * u[1:n + 1])
    h = strength * (0.03 + 0.05 * u[n + 1])
    ob = h * (0.49 / lam) ** 2 + 0.01 * strength * u[n + 2:]
    return raw * (g * gb) + ob


def _random_ellipse(p, u, r_min: float, r_max: float, apply):
    """A ``(p, p)`` boolean ellipse for the lake and shadow augmentations: centre at
    ``(u[1], u[2]) * p``, radii ``r_min + (r_max - r_min) * u[3], u[4]`` pixels; all False
    unless ``apply``."""
    import tensorflow as tf

    size = tf.cast(p, tf.float32)
    grid = tf.cast(tf.range(p), tf.float32) + 0.5
    yy, xx = grid[:, None], grid[None, :]
    ry, rx = r_min + (r_max - r_min) * u[3], r_min + (r_max - r_min) * u[4]
    blob = ((yy - u[1] * size) / ry) ** 2 + ((xx - u[2] * size) / rx) ** 2 <= 1.0
    return tf.logical_and(blob, apply)


def lake_augment(raw, yw, roles, probability: float, seed):
    """Paste a synthetic lake into a tile with the given probability (label 0, weight 1).

    Lakes are the classical NDSI false alarm (water is dark in SWIR too), and the training
    scenes hold almost none. The lake is an ellipse (radii 3-30 px) at a random place, with
    a water spectrum drawn from physics rather than from any test data: green 0.03-0.18
    (clear to turbid glacial water), blue 0.6-1.1 and red 0.4-0.9 times green, NIR 0.05-0.25
    times green (water absorbs NIR within centimetres, so even silty lakes stay far below
    green; bare and dirty glacier ice, also dark in the NIR, keeps about half of green or
    more), SWIR1 0.1-0.6 times NIR and SWIR2 below SWIR1, plus 0.003 of pixel noise. ``raw`` is ``(p, p, len(roles))``
    reflectance, ``yw`` ``(p, p, 2)`` labels and weights.
    """
    import tensorflow as tf

    u = tf.random.stateless_uniform([12], seed=seed)
    blob = _random_ellipse(tf.shape(raw)[0], u, 3.0, 30.0, u[0] < probability)
    green = 0.03 + 0.15 * u[5]
    nir = green * (0.05 + 0.20 * u[8])  # water absorbs NIR: well below green
    swir1 = nir * (0.1 + 0.5 * u[9])
    value = {"green": green, "blue": green * (0.6 + 0.5 * u[6]),
             "red": green * (0.4 + 0.5 * u[7]), "nir": nir, "swir1": swir1,
             "swir2": swir1 * (0.5 + 0.4 * u[10]), "coastal": green * (0.6 + 0.5 * u[6])}
    water = tf.stack([value.get(r, value["nir"]) for r in roles])
    noise = tf.random.stateless_normal(tf.shape(raw), seed=seed + 1, stddev=0.003)
    raw = tf.where(blob[..., None], tf.maximum(water + noise, 0.0), raw)
    yw = tf.where(blob[..., None], tf.constant([0.0, 1.0]), yw)
    return raw, yw


def shadow_augment(raw, roles, probability: float, seed):
    """Cast a synthetic shadow on part of a tile with the given probability; labels stay.

    Lit only by the sky, a shadowed surface keeps its spectral shape scaled down (to
    8-50 %) and tilted towards the blue: ``r' = r s (lambda / 0.56) ** -k`` with ``k`` in
    [0.5, 3] (skylight is Rayleigh-like). It is the counterpart of :func:`lake_augment`:
    shadowed snow and ice are dark in the NIR and SWIR like water, but bluish, while
    glacial lakes are not; without shadows in training, a network that learns lakes also
    learns to drop shadowed ice. The shadow is an ellipse (radii 5-40 px) at a random place.
    """
    import tensorflow as tf

    u = tf.random.stateless_uniform([8], seed=seed)
    blob = _random_ellipse(tf.shape(raw)[0], u, 5.0, 40.0, u[0] < probability)
    lam = tf.constant([ROLE_WAVELENGTHS.get(r, 1.0) for r in roles], tf.float32)
    factor = (0.08 + 0.42 * u[5]) * (lam / 0.56) ** -(0.5 + 2.5 * u[6])
    return tf.where(blob[..., None], raw * factor, raw)


def haze_augment(raw, roles, probability: float, seed):
    """With the given probability, give a tile an atmosphere: ``r' = T_b r + P_b``.

    ``P_b`` and ``T_b`` follow the per-band ranges of :data:`glacierkit.io.level.ATMOSPHERE`
    at a random haze ``u`` in [-0.4, 1]: 0 to 1 is a clear to hazy top of atmosphere (path
    reflectance largest in the blue, near zero in the SWIR); below 0 is a scene from which
    a dark-object correction took too much (:func:`glacierkit.io.level.to_surface` on a
    scene without dark pixels). Each band's path reflectance is scaled by a random
    ``1 +- 0.15``, so the spectral shape of the haze varies. Labels stay: a model trained
    with it learns that haze lifting dark rock's NDSI does not make it glacier.
    """
    import tensorflow as tf

    from ..io.level import ATMOSPHERE

    table = [ATMOSPHERE.get(r, (0.0, 0.0, 1.0, 1.0)) for r in roles]
    plo, phi, tlo, thi = (tf.constant([t[k] for t in table], tf.float32) for k in range(4))
    n = len(roles)
    u = tf.random.stateless_uniform([n + 2], seed=seed)
    haze = -0.4 + 1.4 * u[1]
    shape = 1.0 + 0.15 * (2.0 * u[2:] - 1.0)
    path = tf.where(haze >= 0, plo + haze * (phi - plo), haze * plo) * shape
    trans = thi - tf.maximum(haze, 0.0) * (thi - tlo)
    return tf.where(u[0] < probability, raw * trans + path, raw)


def training_dataset(patches: Patches, batch_size: int = 8, seed: int = 42,
                     start_epoch: int = 0, epochs: int | None = None, augment: bool = True,
                     jitter: float = 0.0, photometric: float = 0.0,
                     resolutions: tuple[float, float] | tuple = (), lakes: float = 0.0,
                     shadows: float = 0.0, haze: float = 0.0):
    """Training batches ``(x, y, w)`` as a ``tf.data.Dataset``, with on-the-fly augmentation.

    Shapes: x ``(b, p, p, c)``, y ``(b, p, p, 1)``, w ``(b, p, p)`` (per-pixel weights).

    Epoch ``e`` visits a permutation of the tiles drawn from ``(seed, e)`` and gives each
    tile one of the 8 flips/rotations drawn from ``(seed, e, tile position)``; the last
    ``n % batch_size`` tiles of each permutation are skipped (a different few each epoch).
    The dataset runs from ``start_epoch`` to ``epochs`` (endless if None), so give Keras
    ``steps_per_epoch`` (the second value returned).

    ``jitter`` > 0 adds radiometric augmentation: every channel of a tile is scaled by
    ``1 + u`` and shifted by ``v`` (in normalized units), ``u, v`` uniform in
    ``[-jitter, jitter]``, mimicking illumination and atmosphere differences between scenes.

    ``photometric`` > 0 augments in reflectance space instead, before the index channels
    are computed (:func:`photometric_augment`; 1 is the full strength), so that NDSI and
    the other normalized differences see what a brighter, hazier or differently calibrated
    scene would give.

    ``haze`` > 0 gives that share of the tiles a simulated atmosphere (top of atmosphere,
    or a scene over-corrected to surface reflectance; :func:`haze_augment`).

    ``lakes`` > 0 pastes a synthetic lake into that share of the tiles
    (:func:`lake_augment`), so that water is learned as not glacier; ``shadows`` > 0 casts
    a synthetic shadow on that share (:func:`shadow_augment`), labels unchanged.

    ``resolutions=(lo, hi)`` (metres) is the resolution augmentation: each tile is seen at
    a pixel size drawn log-uniformly in ``[lo, hi]``: a window of ``p * size / native`` pixels
    is cut (at a random place) from the stored tile and resampled to ``p`` (inputs
    bilinear with antialiasing, labels and weights nearest). Stored tiles must be large
    enough (``make_patches(..., tile_size=...)``).

    Returns
    -------
    (tf.data.Dataset, int)
        The dataset and the number of batches per epoch.
    """
    import tensorflow as tf

    n = patches.n_train
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1; got {batch_size}.")
    if n < batch_size:
        raise ParameterError(
            f"Only {n} training tiles for batch_size={batch_size}. Lower batch_size or the "
            "stride, or add scenes."
        )
    steps = n // batch_size
    per_epoch = steps * batch_size
    seed = int(seed)
    n_channels = patches.x.shape[-1]
    first = start_epoch * per_epoch
    last = None if epochs is None else epochs * per_epoch
    p_out = patches.spec.patch_size
    tile = patches.x.shape[1]
    reflectance = (photometric > 0 or bool(resolutions) or tile != p_out or lakes > 0
                   or shadows > 0 or haze > 0)
    if reflectance and patches.raw is None:
        raise ParameterError("These tiles hold no reflectance (raw) tiles to augment.")
    if resolutions and (len(resolutions) != 2 or not 0 < resolutions[0] <= resolutions[1]):
        raise ParameterError(
            f"resolutions must be (smallest, largest) pixel sizes in metres; got {resolutions}."
        )
    if reflectance:
        src = tf.constant(np.nan_to_num(patches.raw, nan=0.0))
        med = tf.constant(patches.medians)
        res = tf.constant(np.nan_to_num(patches.resolution, nan=20.0))
    else:
        src = tf.constant(patches.x)
    yw = tf.constant(np.stack([patches.y, patches.w], axis=-1))

    def seed_of(k, g):
        return tf.stack([tf.constant(seed + k, tf.int64), g])

    def element(g):
        epoch = g // per_epoch
        j = g % per_epoch
        i = tf.random.experimental.index_shuffle(
            j, seed=tf.stack([tf.constant(seed, tf.int64), epoch]), max_index=n - 1)
        xi, ywi = tf.gather(src, i), tf.gather(yw, i)
        if augment:
            k = tf.random.stateless_uniform([], seed=seed_of(1, g), minval=0, maxval=8,
                                            dtype=tf.int32)
            xi, ywi = dihedral(xi, k), dihedral(ywi, k)
        if reflectance:
            size = tf.constant(float(p_out))
            if resolutions:
                lo, hi = np.log(resolutions[0]), np.log(resolutions[1])
                target = tf.exp(tf.random.stateless_uniform([], seed=seed_of(3, g),
                                                            minval=lo, maxval=hi))
                size = size * target / tf.gather(res, i)
            c = tf.clip_by_value(tf.cast(tf.round(size), tf.int32), 8, tile)
            o = tf.random.stateless_uniform([2], seed=seed_of(4, g), minval=0,
                                            maxval=tile - c + 1, dtype=tf.int32)
            xi = xi[o[0]:o[0] + c, o[1]:o[1] + c]
            ywi = ywi[o[0]:o[0] + c, o[1]:o[1] + c]
            if resolutions or tile != p_out:
                xi = tf.image.resize(xi, (p_out, p_out), method="bilinear", antialias=True)
                ywi = tf.image.resize(ywi, (p_out, p_out), method="nearest")
            if shadows > 0:
                xi = shadow_augment(xi, patches.roles, float(shadows), seed_of(7, g))
            if lakes > 0:
                xi, ywi = lake_augment(xi, ywi, patches.roles, float(lakes), seed_of(6, g))
            if photometric > 0:
                xi = photometric_augment(xi, patches.roles, float(photometric), seed_of(5, g))
            if haze > 0:
                xi = haze_augment(xi, patches.roles, float(haze), seed_of(8, g))
            xi = tf_features(xi, patches.roles, patches.spec, tf.gather(med, i))
            xi.set_shape([p_out, p_out, n_channels])
            ywi.set_shape([p_out, p_out, 2])
        if jitter > 0:
            uv = tf.random.stateless_uniform(
                [2, n_channels], seed=seed_of(2, g), minval=-jitter, maxval=jitter)
            xi = xi * (1.0 + uv[0]) + uv[1]
        return xi, ywi[..., 0:1], ywi[..., 1]

    ds = (tf.data.Dataset.range(first, last) if last is not None
          else tf.data.Dataset.range(first, 2 ** 62))
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds, steps

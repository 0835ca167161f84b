# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python (glacierkit)
#     language: python
#     name: glacierkit
# ---

# %% [markdown]
# # 02 · Band combinations: what separates glacier from the rest?
#
# The paper shows its scenes as the Landsat 8 OLI **6-5-2** false-colour composite (SWIR1, NIR,
# blue), in which ice and snow are cyan, and compares it with **4-3-2** true colour. Here we
# check how well each band, each index and every 3-band combination of the six OLI-equivalent
# bands (blue, green, red, NIR, SWIR1, SWIR2) actually separates glacier pixels from the rest,
# using the RGI outlines as labels:
#
# - **AUC**: the probability that a random glacier pixel has a higher (or lower) value than a
#   random other pixel; 0.5 is useless, 1 perfect. For a band combination: the AUC of its
#   Fisher linear discriminant.
# - **Jeffries–Matusita distance** (JM, 0 to 2) between the two classes modelled as Gaussians.
#
# Rankings are computed on the **training scenes** only; the test scenes are shown for
# information and are not used for any choice.

# %% tags=["parameters"]
train_scenes: list = ["alps-s2/aletsch", "alps-s2/fiescher"]  # prepared scenes the rankings are computed on
test_scenes: list = ["alps-s2/morteratsch", "alps-s2/gorner"]  # held-out prepared scenes, shown for information only
max_pixels: int = 200000  # labelled pixels sampled per scene for the rankings
spectra: list = ["landsat", "sentinel2-sr"]  # labelled pixel spectra from US glaciers to rank the same way; [] skips them
seed: int = 0  # random seed of the pixel sample
output_dir: str = "../runs/interactive"  # folder notebook 01 wrote prepared/ to; bands/ and figures/ go here too

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import glacierkit as gk
from glacierkit.ndsi import separability as sp
from glacierkit.io import write_table
from glacierkit.plot import save_figure, show_composite, show_profiles

pd.set_option("display.precision", 3)
gk.pipeline.parse_parameters(globals())  # list parameters given as text (papermill -p) are read as YAML

# %%
output_dir = Path(output_dir)
figures, tables = output_dir / "figures", output_dir / "bands"
scenes = list(dict.fromkeys([*train_scenes, *test_scenes]))
gk.prep.ensure_prepared(output_dir, scenes)  # notebook 01 prepares them; this makes the notebook run alone
data = {name: gk.prep.load_prepared(output_dir, name) for name in scenes}

# %% [markdown]
# ## 6-5-2 and 4-3-2 side by side
#
# Top row: the paper's 6-5-2 (SWIR1–NIR–blue): ice and snow cyan, rock brown. Bottom row: true
# colour 4-3-2 (red–green–blue): snow and bright rock look alike. The yellow line is the
# rasterized RGI outline.

# %%
fig, axes = plt.subplots(2, len(scenes), figsize=(4 * len(scenes), 8), squeeze=False)
for col, name in enumerate(scenes):
    scene, labels = data[name]
    show_composite(scene, gk.bands.PAPER_BANDS, labels=labels, ax=axes[0, col], title=f"{name} 6-5-2")
    show_composite(scene, gk.bands.TRUE_COLOUR, labels=labels, ax=axes[1, col], title=f"{name} 4-3-2")
fig.tight_layout()
save_figure(fig, figures / "02_composites.png");

# %% [markdown]
# ## Spectral profiles of the two classes
#
# Mean reflectance per band with the 10–90 % range. Glacier is bright in the visible and the
# NIR and dark in both SWIR bands; the other class (rock, debris, vegetation, water) is darker
# in the visible and brighter in the SWIR. That contrast is what NDSI and the SWIR composites
# exploit.

# %%
profiles = pd.concat([sp.spectral_profiles(*data[n]).assign(scene=n) for n in scenes],
                     ignore_index=True)
write_table(profiles, tables / "spectral_profiles.csv")
fig, axes = plt.subplots(1, len(scenes), figsize=(4.2 * len(scenes), 3.4), squeeze=False)
for ax, name in zip(axes[0], scenes):
    show_profiles(profiles[profiles.scene == name], ax=ax, title=name)
fig.tight_layout()
save_figure(fig, figures / "02_spectral_profiles.png");

# %% [markdown]
# ## Single bands and indices, ranked (training scenes)
#
# `glacier: lower` means glacier pixels have the lower values (the SWIR bands). AUC measures
# the ranking of values without assuming a distribution; JM assumes Gaussian classes, which
# suits neither the skewed red/SWIR ratio nor mixed classes, so the two can disagree.

# %%
train_pixels = sp.pooled_pixel_table([data[n] for n in train_scenes], max_pixels=max_pixels,
                                     seed=seed)
single = sp.rank_features(train_pixels)
write_table(single, tables / "single_features_train.csv")
single

# %% [markdown]
# ## Every 3-band combination of the six OLI-equivalent bands (training scenes)
#
# Twenty combinations, ranked by JM distance; `rank_AUC` ranks the same combinations by the
# AUC of their linear discriminant. The order of bands within a composite does not change its
# separability. The sentence under the table says where the paper's 6-5-2 lands.

# %%
combos = sp.rank_combinations(train_pixels)
write_table(combos, tables / "combinations_train.csv")
display(combos)
display(Markdown(sp.describe_rank(combos, gk.bands.PAPER_BANDS)))
display(Markdown(sp.describe_rank(combos, gk.bands.TRUE_COLOUR)))

# %% [markdown]
# ## For information: the same ranking on the test scenes
#
# Not used for any choice. It shows whether the ordering carries over to unseen glaciers.

# %%
if test_scenes:
    test_pixels = sp.pooled_pixel_table([data[n] for n in test_scenes], max_pixels=max_pixels,
                                        seed=seed)
    combos_test = sp.rank_combinations(test_pixels)
    write_table(combos_test, tables / "combinations_test.csv")
    display(Markdown(sp.describe_rank(combos_test, gk.bands.PAPER_BANDS)), combos_test.head(8))

# %% [markdown]
# ## Other regions and sensors: labelled spectra from US glaciers
#
# The Alps rankings come from two crops of one Sentinel-2 tile. The pixel spectra of
# `glacierkit.data.spectra` were labelled by hand at six glaciers in Alaska, Washington and
# Montana (2019-2021) on **Landsat 8/9** and **Sentinel-2**: snow, shadowed snow, ice (here
# glacier) against rock and water. Classes are surface types, not glacier membership, and
# the classes are not balanced like a scene, so compare the *orders*, not the numbers, with
# the Alps tables above.

# %%
spectra_rankings = {}
for sensor in spectra:
    table = sp.spectra_pixel_table(gk.data.spectra(sensor, "training"))
    ranked = sp.rank_combinations(table)
    spectra_rankings[sensor] = ranked
    write_table(ranked, tables / f"combinations_spectra_{sensor}.csv")
    display(Markdown(f"**{sensor}**: {len(table)} pixels "
                     f"({dict(table['surface'].value_counts())}). "
                     + sp.describe_rank(ranked, gk.bands.PAPER_BANDS)))
    display(sp.rank_features(table).head(6))

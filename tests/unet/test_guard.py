"""The domain-shift guard's reports as one table (notebook 05)."""

from glacierkit.unet import guard_table


def test_guard_table_has_one_row_per_scene_with_the_measured_shares():
    reports = {
        "a": {"in_domain": True, "warnings": [], "inputs": {"outside": 0.01,
              "negative_reflectance": 0.0}, "outputs": {"glacier_on_negative_ndsi": 0.02,
                                                        "bright_snow_missed": 0.1}},
        "b": {"in_domain": False, "warnings": ["x", "y"], "inputs": {"outside": 0.4},
              "outputs": {}},
        "c": None,
    }
    table = guard_table(reports)
    assert list(table.index) == ["a", "b", "c"]
    assert table.loc["a", "warnings"] == "none" and table.loc["b", "warnings"] == "x; y"
    assert table.loc["b", "outside"] == 0.4 and table.loc["a", "bright_snow_missed"] == 0.1
    assert list(table["in training domain"]) == [True, False, None]

"""paper_figures.tables: the learning curves side by side, one row per measured step."""

import math

import pandas as pd

from paper_figures.tables import learning_curve_table


def _curves():
    nan = math.nan
    rows = [  # model, experiment, objective, decoder, step, time_s, val_acc, val_bound
        ("vhe_pixelcnn", "class", "vhe", "pixelcnn", 500, 5.0, nan, -65.7),
        ("vhe_pixelcnn", "class", "vhe", "pixelcnn", 1000, 9.0, 0.50, -63.76),
        ("vhe_pixelcnn", "class", "vhe", "pixelcnn", 1800, 16.0, 0.53, -62.36),
        ("vhe_deconv", "class", "vhe", "deconv", 1000, 2.0, 0.60, -138.9),
        ("ns_deconv", "class", "ns", "deconv", 1000, 2.0, 0.52, nan),
        ("vae_deconv", "vae", None, "deconv", 1000, 2.0, nan, -133.5),  # no curve: no column
    ]
    return pd.DataFrame(
        rows, columns=["model", "experiment", "objective", "decoder", "step", "time_s", "val_acc", "val_bound"]
    )


def test_one_row_per_measured_step_and_one_column_per_model_with_a_curve():
    table, note = learning_curve_table(_curves())
    assert list(table.columns) == ["step", "ns_deconv", "vhe_deconv", "vhe_pixelcnn"]  # decoder, then objective
    assert list(table["step"]) == ["1000", "1800"]  # 500: no accuracy
    first, last = table.iloc[0], table.iloc[1]
    assert first["vhe_deconv"] == "60% / -138.9" and first["vhe_pixelcnn"] == "50% / -63.8"
    assert first["ns_deconv"] == "52% / n/a"  # accuracy without a bound
    assert last["vhe_pixelcnn"] == "53% / -62.4" and last["vhe_deconv"] == "-"  # not measured there
    assert "nats per image" in note


def test_no_curve_is_an_empty_table_that_says_so():
    curves = _curves()
    table, note = learning_curve_table(curves.assign(val_acc=math.nan))
    assert table.empty and "No model" in note
    table, _ = learning_curve_table(curves.iloc[0:0])
    assert table.empty


def test_cell_model_prefers_the_profiles_name_when_two_models_fill_a_cell():
    from types import SimpleNamespace

    from paper_figures import tables as T

    def run(names):
        models = {n: {"experiment": "class", "objective": "vhe", "decoder": "deconv"} for n in names}
        return SimpleNamespace(models=models, is_replicate=lambda n: n.endswith("_seed1"))

    # cpu-spatial: the vector model listed first, the profile's own (spatial) model named vhe_deconv
    assert T.cell_model(run(["vhe_deconv_vector", "vhe_deconv"]), "vhe", "deconv") == "vhe_deconv"
    assert T.cell_model(run(["vhe_deconv_seed1", "vhe_b", "vhe_a"]), "vhe", "deconv") == "vhe_b"  # config order
    assert T.cell_model(run(["vhe_deconv_seed1"]), "vhe", "deconv") is None  # never a replicate
    assert T.cell_model(run(["vhe_deconv"]), "ns", "deconv") is None

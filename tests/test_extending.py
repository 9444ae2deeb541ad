"""Extending bench is data: a model variant is one YAML file, a run-level metric is one table entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench import pair, train
from bench.metrics import METRICS, Metric
from bench.models import MediumNet, count_parameters
from bench.report import build_report
from bench.results import load_metrics
from conftest import TINY, only_run_dir, read_metrics, run_cli


def test_a_fourth_model_is_one_yaml_file(tmp_path: Path) -> None:
    extra = tmp_path / "my_conf"
    (extra / "model").mkdir(parents=True)
    (extra / "model" / "medium_x2.yaml").write_text("_target_: bench.models.MediumNet\nname: medium_x2\nwidth: 2\n")
    proc = run_cli(tmp_path, *TINY, "model=medium_x2", f"hydra.searchpath=[file://{extra}]")
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "ok" and metrics["model"] == "medium_x2"
    assert metrics["params"] == count_parameters(MediumNet(width=2)) == 256_830


def test_a_component_option_it_does_not_take_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, *TINY, "+model.depth=3")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "bench: error: model.depth is not an option of model=medium; did you mean +model.width?"
    )
    # Refused before Hydra made the run's folder: a typo leaves nothing behind, as a sweep's gives its folder back.
    assert not (tmp_path / "outputs").exists()


def test_a_mistake_in_a_models_yaml_file_is_worded_for_the_file(tmp_path: Path) -> None:
    # Said as for the command line, the fix read "+model.width" for a file where the key is "width:", and a file
    # without name: read "model.name=None is not a name".
    extra = tmp_path / "my_conf"
    (extra / "model").mkdir(parents=True)
    (extra / "model" / "typo.yaml").write_text("_target_: bench.models.MediumNet\nname: typo\nwidht: 2\n")
    (extra / "model" / "nameless.yaml").write_text("_target_: bench.models.MediumNet\nwidth: 2\n")
    said = {}
    for option in ("typo", "nameless"):
        proc = run_cli(tmp_path, *TINY, f"model={option}", f"hydra.searchpath=[file://{extra}]")
        assert proc.returncode == 2
        said[option] = proc.stderr.strip()
    assert said["typo"] == ("bench: error: model.widht is not an option of model=typo, whose YAML file sets it "
                            "(widht: ...); did you mean width?")  # fmt: skip
    assert said["nameless"] == ("bench: error: model.name is not set: the YAML file of model=nameless needs a name: "
                                "line, its label in every table (name: nameless)")  # fmt: skip


def test_a_presets_defaults_list_without_override_keeps_hydras_advice(tmp_path: Path) -> None:
    # The same Hydra message as for +model=large on the command line; here its advice is the fix, in the file.
    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    (tmp_path / "my_conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /model: large\n"
    )
    proc = run_cli(tmp_path, "--cfg", "job", "experiment=mine", "hydra.searchpath=[file://my_conf]")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "bench: error: Multiple values for model. To override a value use 'override model: large'"
    )


@pytest.fixture
def loss_drop() -> Iterator[Metric]:
    """A metric added the way a contributor would: one entry, derived from the epochs."""
    metric = Metric(
        "loss_drop", "loss drop over the run", "", ",.4f", "loss drop", "difference", table=True,
        derive=lambda epochs: epochs[0]["loss"] - epochs[-1]["loss"] if epochs else None,
    )  # fmt: skip
    METRICS.append(metric)
    yield metric
    METRICS.remove(metric)


def test_a_new_metric_is_one_entry_in_the_table(loss_drop: Metric, cfg_for, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for job, seed in enumerate((0, 1)):
        result = train.run(cfg_for("epochs=2", f"seed={seed}"), sweep / str(job))
        assert result.status == "ok", result.error
    first, second = (load_metrics(sweep / str(job)) for job in (0, 1))
    assert first["loss_drop"] == pytest.approx(first["epochs_detail"][0]["loss"] - first["final_loss"])

    build_report([sweep])
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["loss_drop"]) == pytest.approx([first["loss_drop"], second["loss_drop"]])
    report = (sweep / "report.md").read_text()
    assert "loss drop" in report and loss_drop.format(first["loss_drop"]) in report

    rows = pair.metric_table(first, second).set_index("metric")
    # The difference of the values as shown: 0.0123 and 0.0456 differ by +0.0333, whatever their fifth digit.
    shown = [float(loss_drop.format(run["loss_drop"]).replace(",", "")) for run in (first, second)]
    assert rows.loc["loss drop over the run", "new vs original"] == format(shown[1] - shown[0], "+,.4f")


def test_every_metrics_whiskers_are_metrics_of_the_table() -> None:
    # A misspelt band key would drop a panel's whiskers without a word.
    keys = {m.key for m in METRICS}
    bands = [m.band for m in METRICS if m.band]
    assert bands and all(low in keys and high in keys for low, high in bands), bands

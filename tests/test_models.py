"""The lab's models: exact parameter counts, seeded weights, and `_target_` YAML files as the only registry."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench import models
from bench.models import count_parameters
from bench.schema import compose, instantiate

CONF = Path(__file__).resolve().parents[1] / "conf"


def _model(name: str, num_classes: int = 10) -> torch.nn.Module:
    return instantiate(compose([f"model={name}"]).model, num_classes=num_classes)


@pytest.mark.parametrize(("name", "params"), [("small", 378_866), ("medium", 121_182), ("large", 4_502_602)])
def test_lab_models_have_the_lab_parameter_counts(name: str, params: int) -> None:
    model = _model(name)
    assert count_parameters(model) == params
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def test_every_model_option_names_a_class_and_every_class_has_an_option() -> None:
    targets = {OmegaConf.load(p)["_target_"] for p in (CONF / "model").glob("*.yaml")}
    classes = {
        f"bench.models.{name}"
        for name, obj in inspect.getmembers(models, inspect.isclass)
        if issubclass(obj, torch.nn.Module) and obj.__module__ == models.__name__
    }
    assert targets == classes


def test_weights_depend_only_on_the_seed() -> None:
    torch.manual_seed(3)
    a = _model("medium").state_dict()
    torch.manual_seed(3)
    b = _model("medium").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_number_of_classes_comes_from_the_caller() -> None:
    assert _model("large", num_classes=3)(torch.zeros(2, 3, 32, 32)).shape == (2, 3)

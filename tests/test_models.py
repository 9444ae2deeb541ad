from pathlib import Path

import pytest
import torch

from bench.models import MODELS, build_model, count_parameters

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize(("name", "params"), [("small", 378_866), ("medium", 121_182), ("large", 4_502_602)])
def test_lab_models_have_the_lab_parameter_counts(name: str, params: int) -> None:
    model = build_model(name)
    assert count_parameters(model) == params
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def test_every_model_option_has_a_class_and_every_class_an_option() -> None:
    options = {p.stem for p in (CONF / "model").glob("*.yaml")}
    assert options == set(MODELS)


def test_weights_depend_only_on_the_seed() -> None:
    torch.manual_seed(3)
    a = build_model("medium").state_dict()
    torch.manual_seed(3)
    b = build_model("medium").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'.*large, medium, small"):
        build_model("nope")

"""The lab's three CNNs, layer for layer. Each is selected by ``conf/model/<name>.yaml`` through ``_target_``.

Every model takes ``num_classes`` (from the dataset, at run time) and ``width``, a channel multiplier, so
a wider or narrower variant is one YAML file (``width: 2``); at ``width: 1`` and 10 classes each net is the
lab's, parameter for parameter.
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _classifier(*sizes: int) -> nn.Sequential:
    """Linear layers of the given sizes with a ReLU between each pair (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers += [nn.Linear(n_in, n_out)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class SmallNet(nn.Module):
    """One conv block and two linear layers: 378,866 parameters (10 classes, width 1)."""

    def __init__(self, num_classes: int = 10, width: int = 1) -> None:
        super().__init__()
        c = 16 * width
        self.features = nn.Sequential(nn.Conv2d(3, c, 5), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.classifier = _classifier(c * 14 * 14, 120, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class MediumNet(nn.Module):
    """The classic two-conv LeNet-style net the lab used for parts 1, 2 and 4: 121,182 parameters."""

    def __init__(self, num_classes: int = 10, width: int = 1) -> None:
        super().__init__()
        c1, c2 = 16 * width, 32 * width
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        )  # fmt: skip
        self.classifier = _classifier(c2 * 5 * 5, 120, 84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class LargeNet(nn.Module):
    """Four 3x3 convs and a wide classifier, the lab's compute-heavy case: 4,502,602 parameters."""

    def __init__(self, num_classes: int = 10, width: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = 32 * width, 64 * width, 128 * width
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )  # fmt: skip
        self.classifier = _classifier(c3 * 8 * 8, 512, 128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))

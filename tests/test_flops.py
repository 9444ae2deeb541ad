"""FLOP counting against a hand count of the lab's three nets, and the peak-rate table's name matching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.flops import flop_utilization, peak_tflops, training_flops_per_sample
from bench.models import LargeNet, MediumNet, SmallNet
from conftest import needs_cuda


def conv(c_in: int, c_out: int, k: int, out: int) -> int:
    """Forward FLOPs per sample of a k×k conv with an out×out output: a multiply-add is 2 FLOPs."""
    return 2 * c_out * out * out * c_in * k * k


def linear(n_in: int, n_out: int) -> int:
    return 2 * n_in * n_out


# Each net's counted layers in order (ReLU, pooling and biases are not counted), and its first layer's forward.
HAND = {
    SmallNet: ([conv(3, 16, 5, 28), linear(16 * 14 * 14, 120), linear(120, 10)], conv(3, 16, 5, 28)),
    MediumNet: (
        [conv(3, 16, 5, 28), conv(16, 32, 5, 10), linear(32 * 5 * 5, 120), linear(120, 84), linear(84, 10)],
        conv(3, 16, 5, 28),
    ),
    LargeNet: (
        [
            conv(3, 32, 3, 32), conv(32, 64, 3, 32), conv(64, 128, 3, 16), conv(128, 128, 3, 16),
            linear(128 * 8 * 8, 512), linear(512, 128), linear(128, 10),
        ],
        conv(3, 32, 3, 32),
    ),
}  # fmt: skip


def batch(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_medium_net_forward_is_the_issues_number():
    count = training_flops_per_sample(MediumNet(), batch())
    assert count.forward == 4_655_440
    assert count.training == 12_084_720


@pytest.mark.parametrize("net", [SmallNet, MediumNet, LargeNet], ids=lambda n: n.__name__)
def test_counts_match_the_hand_count(net):
    layers, first = HAND[net]
    count = training_flops_per_sample(net(), batch())
    assert count.forward == sum(layers)
    # The backward of every conv/linear layer is an input gradient plus a weight gradient, each as many FLOPs as
    # its forward; the first conv's input is the data, which needs no gradient, so it has only the weight
    # gradient. Hence backward = 2 × forward − first layer's forward, and training = 3 × forward − first.
    assert count.backward == 2 * count.forward - first
    assert count.training == 3 * count.forward - first
    assert sum(count.by_operator.values()) == count.training
    fwd_ops = count.by_operator["aten.convolution"] + count.by_operator["aten.addmm"]
    assert fwd_ops == count.forward


def test_count_is_per_sample():
    assert training_flops_per_sample(SmallNet(), batch(1)) == training_flops_per_sample(SmallNet(), batch(6))


def test_counting_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = MediumNet()
    model.eval()
    first, *rest = list(model.parameters())
    first.grad = torch.full_like(first, 0.5)  # an existing gradient (mid-accumulation) stays; None stays None
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads_before = {name: p.grad for name, p in model.named_parameters()}
    saved_grad = first.grad.clone()

    training_flops_per_sample(model, batch())

    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.grad is grads_before[name], name
    assert torch.equal(first.grad, saved_grad)
    assert all(p.grad is None for p in rest)
    assert not model.training


def test_buffers_are_restored():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    before = {name: b.clone() for name, b in model.named_buffers()}
    training_flops_per_sample(model, batch())
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), name


def test_same_count_under_autocast():
    model = MediumNet()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        count = training_flops_per_sample(model, batch())
    assert (count.forward, count.training) == (4_655_440, 12_084_720)


def test_given_loss_and_labels():
    labels = torch.arange(4) % 10
    count = training_flops_per_sample(SmallNet(), batch(), loss_fn=nn.CrossEntropyLoss(), labels=labels)
    assert count.forward == sum(HAND[SmallNet][0])


@pytest.mark.cuda
@needs_cuda
def test_cuda_counts_match_cpu():
    model = MediumNet().cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        count = training_flops_per_sample(model, batch().cuda())
    assert (count.forward, count.training) == (4_655_440, 12_084_720)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "precision", "tflops", "source"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3", "tf32", 494.5, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3", "fp32", 67, "H100 SXM"),
        ("NVIDIA H100 PCIe", "fp16", 756.5, "H100 PCIe"),
        ("NVIDIA H200", "bf16", 989.5, "H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156, "A100"),
        ("NVIDIA A100-PCIE-40GB", "bf16", 312, "A100"),
        ("NVIDIA A100 80GB PCIe", "fp32", 19.5, "A100"),
        ("NVIDIA L4", "fp16", 121, "L4"),
        ("Tesla T4", "fp16", 65, "T4"),
        ("Tesla V100-SXM2-16GB", "fp16", 125, "V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "fp32", 14, "V100 PCIe"),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2, "RTX 4090"),
    ],
)
def test_peak_of_known_gpus(name, precision, tflops, source):
    found = peak_tflops(name, precision)
    assert found is not None
    assert found[0] == tflops
    assert source in found[1]
    assert "datasheet" in found[1] or "whitepaper" in found[1]


@pytest.mark.parametrize(
    ("name", "precision"),
    [
        ("NVIDIA H100 NVL", "bf16"),
        ("NVIDIA H200 NVL", "bf16"),
        ("NVIDIA L40S", "bf16"),
        ("NVIDIA A10", "bf16"),
        ("Tesla V100S-PCIE-32GB", "fp16"),
        ("NVIDIA GeForce RTX 4090 D", "bf16"),
        ("NVIDIA GeForce RTX 4090 Laptop GPU", "bf16"),
        ("Some Future GPU", "fp32"),
        ("cpu", "fp32"),
        ("Tesla T4", "bf16"),  # no bf16 or tf32 before Ampere
        ("Tesla V100-SXM2-16GB", "tf32"),
        ("NVIDIA H100 80GB HBM3", "fp8"),
    ],
)
def test_unknown_gpu_or_precision_is_none(name, precision):
    assert peak_tflops(name, precision) is None


def test_flop_utilization():
    # 12,084,720 FLOPs per sample at 10,000 samples/s on a 67 TFLOP/s part: 1.2e11 / 6.7e13.
    assert flop_utilization(12_084_720, 10_000, 67.0) == pytest.approx(12_084_720e4 / 67e12)

"""FLOPs of one training step, counted once, and the GPUs' dense peak rates: what model FLOP utilisation needs.

Counting follows ``torch.utils.flop_counter.FlopCounterMode``: a multiply-add is 2 FLOPs, and only
matmul- and convolution-like operators are counted (conv, mm, addmm, bmm, attention and their backwards);
ReLU, pooling, bias adds, the loss and the optimizer are not. A conv layer's forward is
2 × C_out × H_out × W_out × C_in × k × k per sample, a linear layer's 2 × in × out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class FlopCount:
    """FLOPs per sample: the forward, the whole training step (forward + backward), and per operator."""

    forward: int
    training: int
    by_operator: dict[str, int] = field(default_factory=dict)  # e.g. "aten.convolution_backward": n (training)

    @property
    def backward(self) -> int:
        return self.training - self.forward


def training_flops_per_sample(
    model: nn.Module, example: Tensor, loss_fn: nn.Module | None = None, labels: Tensor | None = None
) -> FlopCount:
    """Count one training step's FLOPs on the batch ``example`` (N, C, H, W), divided by N.

    The forward and the backward run once, in training mode, under the counter; the model's state is left as
    it was. Gradients are taken with ``torch.autograd.grad`` rather than ``backward()``: the same backward
    operators run (and are counted), but nothing is written into ``.grad`` and no grad-accumulation hooks fire,
    so existing gradients, weights and optimizer state are untouched. Buffers a forward may update (BatchNorm's
    running statistics) are restored, and so is train/eval mode. Works on CPU and CUDA, and under an autocast
    the caller opens (the counted shapes, hence FLOPs, do not depend on the dtype).

    The backward of a conv or linear layer counts twice its forward (input gradient + weight gradient), except
    where the input needs no gradient (the first layer, fed the data), which has only the weight gradient.
    """
    n = example.shape[0]
    if n == 0:
        raise ValueError("training_flops_per_sample needs a non-empty batch")
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    was_training = model.training
    try:
        model.train()
        with FlopCounterMode(display=False) as counter:
            output = model(example)
            if labels is None:
                labels = torch.zeros(n, dtype=torch.long, device=output.device)
            loss = loss_fn(output, labels)
            forward = counter.get_total_flops()
            if params:
                torch.autograd.grad(loss, params, allow_unused=True)
            training = counter.get_total_flops()
        by_operator = {str(op): round(v / n) for op, v in counter.get_flop_counts().get("Global", {}).items()}
    finally:
        model.train(was_training)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    return FlopCount(forward=round(forward / n), training=round(training / n), by_operator=by_operator)


# Dense peak TFLOP/s (no structured sparsity) per GPU and math precision. Datasheets print tensor-core figures
# with sparsity (marked *); the dense figure is half of it. fp32 is the non-tensor-core rate; bf16 and fp16
# are with fp32 accumulation (what PyTorch uses). Only vendor figures; a GPU or precision not here is unknown.
_H100 = "NVIDIA H100 Tensor Core GPU datasheet"
_V100 = "NVIDIA Tesla V100 GPU datasheet"
_ADA = "NVIDIA Ada GPU Architecture whitepaper, appendix A (GeForce RTX 4090; fp16/bf16 with fp32 accumulate)"
_HOPPER = {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}
PEAK_TFLOPS: dict[str, tuple[dict[str, float], str]] = {
    "H100 SXM": (_HOPPER, f"{_H100} (H100 SXM)"),
    "H100 PCIe": ({"fp32": 51, "tf32": 378, "bf16": 756.5, "fp16": 756.5}, f"{_H100} (H100 PCIe)"),
    "H200 SXM": (_HOPPER, "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM)"),
    "A100": (
        {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312},
        "NVIDIA A100 Tensor Core GPU datasheet (same for SXM and PCIe, 40GB and 80GB)",
    ),
    "L4": ({"fp32": 30.3, "tf32": 60, "bf16": 121, "fp16": 121}, "NVIDIA L4 Tensor Core GPU datasheet"),
    "T4": ({"fp32": 8.1, "fp16": 65}, "NVIDIA T4 Tensor Core GPU datasheet (fp16: mixed precision FP16/FP32)"),
    "V100 SXM2": ({"fp32": 15.7, "fp16": 125}, f"{_V100} (V100 SXM2; fp16: tensor performance)"),
    "V100 PCIe": ({"fp32": 14, "fp16": 112}, f"{_V100} (V100 PCIe; fp16: tensor performance)"),
    "RTX 4090": ({"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}, _ADA),
}

# torch.cuda.get_device_name() → table key; first match wins. Variants with other figures (H100 NVL, H200 NVL,
# V100S, V100 SXM3, RTX 4090 D, laptop GPUs, L40) match nothing, so they are unknown rather than guessed.
_NAMES: list[tuple[str, str]] = [
    (r"\bh100\b.*\bnvl\b", ""),
    (r"\bh100 pcie\b", "H100 PCIe"),
    (r"\bh100\b.*(\bhbm3\b|\bsxm)", "H100 SXM"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"\bh200\b.*\bnvl\b", ""),
    (r"^nvidia h200\b", "H200 SXM"),
    (r"\ba100\b", "A100"),
    (r"^nvidia l4$", "L4"),
    (r"\bt4$", "T4"),
    (r"\bv100-sxm2\b", "V100 SXM2"),
    (r"\bv100-pcie\b", "V100 PCIe"),
    (r"^nvidia geforce rtx 4090$", "RTX 4090"),
]


def peak_tflops(device_name: str, precision: str) -> tuple[float, str] | None:
    """The dense peak TFLOP/s of ``device_name`` (as torch.cuda.get_device_name() spells it) in ``precision``.

    ``precision`` is the effective math precision: "fp32", "tf32", "bf16" or "fp16". Returns the figure and its
    source, or None for a GPU or precision not in the table: an unknown peak is never guessed.
    """
    name = " ".join(device_name.lower().split())
    for pattern, key in _NAMES:
        if re.search(pattern, name):
            if not key:
                return None
            rates, source = PEAK_TFLOPS[key]
            rate = rates.get(precision)
            return None if rate is None else (float(rate), source)
    return None


def flop_utilization(flops_per_sample: int, samples_per_s: float, peak: float) -> float:
    """Model FLOP utilisation: achieved FLOP/s over the peak (``peak`` in TFLOP/s), as a share (0.25 = 25%)."""
    return flops_per_sample * samples_per_s / (peak * 1e12)


def count_untouched(model: nn.Module, x: Tensor, y: Tensor, dtype: torch.dtype | None) -> FlopCount:
    """:func:`training_flops_per_sample` under the run's autocast, with the RNG left as it was, so a run that
    counts trains exactly as one that does not."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        return training_flops_per_sample(model, x, labels=y)


def utilization(
    run: dict[str, float | None], gpu: str | None, precision: str
) -> tuple[float | None, float | None, str | None]:
    """(achieved TFLOP/s, share of the dense peak, a note) for a run's ``flops_per_sample`` and ``samples_per_s``.

    The share is given only on a GPU of the peak table (``gpu`` is its name; None on the CPU), for the math
    the run used; the note names the peak's source, or says that none is known. Never a guess.
    """
    flops, rate = run.get("flops_per_sample"), run.get("samples_per_s")
    if flops is None or rate is None:
        return None, None, None
    tflops = flops * rate / 1e12
    if gpu is None:
        return tflops, None, None
    peak = peak_tflops(gpu, precision)
    if peak is None:
        return tflops, None, f"no dense peak is known for {gpu}: % of peak is not given"
    return tflops, flop_utilization(flops, rate, peak[0]), f"peak {peak[0]:g} TFLOP/s ({precision}) from {peak[1]}"

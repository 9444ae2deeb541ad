"""One optimisation step, built once per run from the ``step`` and ``precision`` config.

Every variant computes the same update (docs/architecture.md, "Measurement rules"): Adam is Adam whether
it runs as a Python loop, as foreach kernels or fused; channels_last and compilation change memory layout
and kernels, not the maths.
A test compares their losses with the plain step's.

``step.compile``:
- ``none``: eager PyTorch, the lab's step.
- ``default`` / ``reduce-overhead``: ``torch.compile`` of the model with that mode (reduce-overhead uses
  CUDA graphs for forward and backward; CUDA only).
- ``cudagraph``: the whole step (forward, backward, Adam) captured once as one CUDA graph and replayed
  per batch, which removes nearly all per-step launch overhead for these small nets (CUDA only).
- ``max``: ``torch.compile`` of the model (Inductor's fused kernels, no CUDA graphs of its own) inside the
  whole-step capture, with the resident loader's index gather and normalization moved into the step,
  so a replay is the whole step and the harness adds nothing per batch (on the CPU: the compiled model
  and the in-step gather, without capture).
- ``auto``: the mode measured fastest for the device (AUTO_COMPILE), ``none`` where a GradScaler runs.
Compilation and capture happen in the warm-up, never inside a timed epoch.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

StepFn = Callable[[Tensor, Tensor], Tensor]
Prepare = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

# What `step.adam=auto`, `step.channels_last=null` and `step.compile=auto` resolve to per device type, from
# benchmarks/step_options.py (README "Performance" has the tables).
# CPU (2 cores): fused Adam 1.03x, channels_last 1.17-1.25x, torch.compile 0.63x.
# CUDA (H100, torch 2.11, MediumNet·256 tf32 / MediumNet·4096 bf16 / LargeNet·1024 bf16, x the eager step):
# fused Adam 1.16 / 1.02 / 1.02; whole-step capture 3.82 / 1.02 / 1.02, with fused Adam 4.42 / 1.04 / 1.04,
# and channels_last 4.62 / 1.15 / 1.35; compile=max with fused Adam 5.24 / 1.43 / 2.10, and channels_last
# 5.72 / 1.61 / 2.24, the fastest in every column. So channels_last is on wherever the step is captured
# (cudagraph, max); other steps keep AUTO_CHANNELS_LAST. CUDA's eager step stays NCHW in every precision
# (tf32 eager measured 0.91x with it, bf16 1.11-1.31x), so the lab's path compares precisions
# (experiment=amp) in one layout. fp16's eager step (its GradScaler cannot be captured), MediumNet at 256 /
# 1024: fused Adam 1.00 / 1.38, channels_last 0.87 / 0.98, both 1.04 / 1.03; one noisy run, no reason to
# change the choices.
AUTO_ADAM = {"cuda": "fused", "cpu": "fused"}
AUTO_CHANNELS_LAST = {"cuda": False, "cpu": True}  # a captured step (CAPTURED, below) has it on everywhere
AUTO_COMPILE = {"cuda": "max", "cpu": "none"}
#: compile modes whose step is captured as one CUDA graph (on CUDA)
CAPTURED = ("cudagraph", "max")
_ADAM_KWARGS: dict[str, dict[str, bool]] = {
    "default": {},
    "forloop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}
#: eager steps a captured step runs on a side stream before capture, as PyTorch's CUDA-graph notes advise
CAPTURE_WARMUP = 3


@dataclass
class Step:
    """The step function plus what a reader of the metrics should know about how it ran."""

    fn: StepFn
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    settings: dict[str, object]
    #: warm-up steps this step needs before it runs at full speed (compilation, capture)
    min_warmup_steps: int = 0


def resolve_adam(choice: str, device: torch.device) -> str:
    if choice != "auto":
        return choice
    adam = AUTO_ADAM.get(device.type, "default")
    if adam == "fused" and device.type == "cpu" and _torch_version() < (2, 4):
        return "foreach"  # fused Adam runs on the CPU from torch 2.4 on
    return adam


def autocast_dtype(precision: DictConfig) -> torch.dtype | None:
    """The dtype the ``precision`` node autocasts to (None for fp32); the step, evaluation and benchmarks share it."""
    name = precision.autocast_dtype
    return getattr(torch, name) if name else None


@contextmanager
def math_mode(precision: DictConfig) -> Iterator[None]:
    """TF32 on or off for the run's fp32 matmuls and convolutions, as ``precision.tf32`` says; restored after.

    Set with the ``allow_tf32`` flags, which every torch since 1.7 has and torch's own code still reads. From
    torch 2.9 on two things need care. Reading the flags raises once the process has mixed them with torch's
    newer ``fp32_precision`` settings, so there the state is saved and restored through those. And clearing
    cuDNN's flag only clears its convolution and RNN settings, which then inherit cuDNN's (or the process's)
    own: after ``torch.backends.fp32_precision = "tf32"``, precision=fp32 ran its convolutions in TF32. So
    cuDNN's settings are then set outright, and put back after.
    """
    saved = _tf32_state()
    try:
        matmul: str | None = torch.get_float32_matmul_precision()  # "medium" is more than the flag can say
    except RuntimeError:
        matmul = None
    tf32 = bool(precision.tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    wanted = "tf32" if tf32 else "ieee"
    # "none" leaves it to the old flag; another value (shown resolved through cuDNN's or the process's setting)
    # overrides it.
    inherited = _NEW_API and any(_backend(op).fp32_precision not in (wanted, "none") for op in _CUDNN[1:])
    if inherited:
        for path in _CUDNN:
            _backend(path).fp32_precision = wanted
    try:
        yield
    finally:
        _restore_tf32(saved)
        if matmul is not None:
            torch.set_float32_matmul_precision(matmul)
        if inherited:
            for path, value in zip(_CUDNN, saved[1][1:], strict=True):
                _backend(path).fp32_precision = value


#: torch >= 2.9's fp32_precision settings that math_mode touches; cuDNN's own before its convolutions and RNNs,
#: which inherit it
_FP32_PRECISION = ("cuda.matmul", "cudnn", "cudnn.conv", "cudnn.rnn")
_CUDNN = _FP32_PRECISION[1:]
_NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")


def _backend(path: str) -> object:
    return functools.reduce(getattr, path.split("."), torch.backends)


def _tf32_state() -> tuple[list[bool | None], tuple[str, ...]]:
    """Each old flag where it reads (None where the process's mixing of the APIs makes it raise), and the new
    settings where torch has them."""
    flags: list[bool | None] = []
    for read in (lambda: torch.backends.cuda.matmul.allow_tf32, lambda: torch.backends.cudnn.allow_tf32):
        try:
            flags.append(read())
        except RuntimeError:
            flags.append(None)
    return flags, tuple(_backend(path).fp32_precision for path in _FP32_PRECISION) if _NEW_API else ()


def _restore_tf32(saved: tuple[list[bool | None], tuple[str, ...]]) -> None:
    """Each flag as it read; where it could not be read, its new settings as they were."""
    (matmul, cudnn), settings = saved
    if matmul is not None:
        torch.backends.cuda.matmul.allow_tf32 = matmul
    elif settings:
        torch.backends.cuda.matmul.fp32_precision = settings[0]
    if cudnn is not None:
        torch.backends.cudnn.allow_tf32 = cudnn
    elif settings:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision = settings[2:]


def math_precision(precision: DictConfig) -> str:
    """The arithmetic the GPU's matmuls and convolutions run in, as the peak table names it."""
    dtype = precision.autocast_dtype
    return {"float16": "fp16", "bfloat16": "bf16"}.get(dtype) or ("tf32" if precision.get("tf32") else "fp32")


def resolve_channels_last(choice: bool | None, device: torch.device, compile_mode: str = "none") -> bool:
    """``null`` → on for a captured step (``compile_mode``, resolved: cudagraph or max), else per device."""
    if choice is not None:
        return bool(choice)
    return compile_mode in CAPTURED or AUTO_CHANNELS_LAST.get(device.type, False)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def resolve_compile(choice: str, device: torch.device, grad_scaler: bool) -> str:
    """``auto`` → the mode measured fastest for the device (AUTO_COMPILE); GradScaler cannot be captured."""
    if choice != "auto":
        return choice
    mode = AUTO_COMPILE.get(device.type, "none")
    return "none" if grad_scaler and mode in CAPTURED else mode


def resolve_compile_and_layout(options: DictConfig, device: torch.device, precision: DictConfig) -> tuple[str, bool]:
    """The compile mode and channels_last a step built from ``options`` runs with: the run lays out its model
    and data by them before it builds the step, so both read them here."""
    compile_mode = resolve_compile(options.compile, device, bool(precision.grad_scaler))
    return compile_mode, resolve_channels_last(options.channels_last, device, compile_mode)


def build_step(
    model: nn.Module,
    device: torch.device,
    *,
    options: DictConfig,
    precision: DictConfig,
    lr: float,
    prepare: Prepare | None = None,
) -> Step:
    """Adam at ``lr`` + cross-entropy, under ``precision`` and the ``step`` node's ``options``.

    ``prepare`` turns what the loader yields into the model's input inside the step (with compile=max, the
    resident loader's index gather and normalization), so a captured step replays it too.
    """
    compile_mode, channels_last = resolve_compile_and_layout(options, device, precision)
    captured = compile_mode in CAPTURED and device.type == "cuda"

    adam = resolve_adam(options.adam, device)
    kwargs = dict(_ADAM_KWARGS[adam])
    if captured:
        kwargs["capturable"] = True  # Adam's step count lives on the GPU, so a replay advances it
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, **kwargs)
    criterion = nn.CrossEntropyLoss()
    dtype = autocast_dtype(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=bool(precision.grad_scaler))
    # A captured graph owns the .grad tensors: they must be zeroed, never freed.
    set_to_none = bool(options.set_to_none) and not captured
    forward: nn.Module | Callable[[Tensor], Tensor] = model
    if compile_mode in ("default", "reduce-overhead", "max"):
        # Static shapes: the full and the last, partial batch each get their own graph in the warm-up
        # (a captured step runs the partial batch on the plain model instead, below), rather than one
        # dynamic-shape graph that the timed epochs would then run. `max` is Inductor's
        # default mode (fused kernels, no CUDA graphs of its own: the whole-step capture makes those);
        # max-autotune would add minutes of autotuning to every warm-up.
        forward = torch.compile(model, mode="default" if compile_mode == "max" else compile_mode, dynamic=False)
        if device.type == "cpu":  # Inductor's "No CUDA runtime is found" warning: on a CPU run, that is expected
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

    def make(net: nn.Module | Callable[[Tensor], Tensor]) -> StepFn:
        def eager(x: Tensor, y: Tensor) -> Tensor:
            if prepare is not None:
                x, y = prepare(x, y)
            optimizer.zero_grad(set_to_none=set_to_none)
            # Autocast's weight-cast cache must be off while a graph is captured (PyTorch CUDA-graph notes).
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=not captured):
                loss = criterion(net(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # Detached, never .item(): reading the value here would sync with the GPU every step.
            return loss.detach()

        return eager

    eager = make(forward)

    arithmetic = math_precision(precision)
    settings = {
        "adam": adam,
        "set_to_none": set_to_none,
        "channels_last": channels_last,
        "compile": compile_mode,
        "autocast": precision.autocast_dtype,
        "grad_scaler": scaler.is_enabled(),
        # What ran: TF32 is a GPU tensor-core format, so precision=tf32 is fp32 on the CPU (a note says so).
        "math": "fp32" if device.type != "cuda" and arithmetic == "tf32" else arithmetic,
    }
    if not captured:
        return Step(eager, optimizer, scaler, settings, min_warmup_steps=2 if compile_mode != "none" else 0)
    # The epoch's last, partial batch runs eagerly on the plain model: the same maths, and no second
    # compilation (tens of seconds on a GPU) for one step an epoch.
    return Step(_CapturedStep(eager, make(model)), optimizer, scaler, settings, min_warmup_steps=CAPTURE_WARMUP + 1)


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One warm-up stream per device for the process: each new stream costs cuBLAS a new workspace."""
    return torch.cuda.Stream(device)


class _CapturedStep:
    """The eager step, captured as one CUDA graph on its first full-size batch and replayed after.

    Batches of another shape (the last, partial batch of an epoch) run ``odd``, the eager step on the plain
    model, with the same parameters, optimizer state and gradient tensors, so the maths is unchanged.
    """

    def __init__(self, eager: StepFn, odd: StepFn) -> None:
        self.eager = eager
        self.odd = odd
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[Tensor, Tensor, Tensor] | None = None
        self.shape: torch.Size | None = None
        self.seen = 0

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if self.shape is None:
            self.shape = x.shape
        if x.shape != self.shape:
            return self.odd(x, y)
        if self.graph is not None and self.static is not None:
            static_x, static_y, static_loss = self.static
            static_x.copy_(x)
            static_y.copy_(y)
            self.graph.replay()
            return static_loss
        self.seen += 1
        if self.seen <= CAPTURE_WARMUP:
            side = _side_stream(x.device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self.eager(x, y)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        static_x, static_y = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread may allocate while this thread captures.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_loss = self.eager(static_x, static_y)
        self.graph, self.static = graph, (static_x, static_y, static_loss)
        graph.replay()  # capture records the step without running it
        return static_loss

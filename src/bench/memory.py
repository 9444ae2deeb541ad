"""What peak memory is made of: a breakdown measured at defined points of a run, adding up to the peak.

Persistent tensors are measured by their sizes: parameters, gradients and optimizer state after the
warm-up, and the resident dataset. The allocator is read at two points: right before the timed epochs
(``baseline``: everything persistent, including what the sizes do not name, e.g. a captured graph's static
buffers) and at the end of them (the steady-state peak, counters reset after the warm-up). So:

    parameters + gradients + optimizer + dataset + other persistent + activations + graph pool = peak allocated
    peak allocated + allocator reserve                                                          = peak reserved

``activations`` is the peak minus the persistent memory: activations, temporaries and library workspaces
of the busiest moment of a step. A captured step (CUDA graphs: ``step.compile=cudagraph``, ``max``,
``reduce-overhead``) keeps them in its graph's private pool instead: torch counts them as allocated only
while the graph is captured (in the warm-up) and as reserved, not allocated, between and during replays,
which make no allocator calls. So the pools' memory beyond their live tensors is read once before the timed
epochs, as ``graph pool``, and counted in the peak: without it the fast path's peak would leave out the
step's activations. The allocator is an interface so that the arithmetic is tested on the CPU with a
stand-in; on CUDA it is torch.cuda's caching allocator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch

from bench.measure import MIB, release_cached_memory
from bench.results import MEMORY_PARTS as PARTS


class Allocator(Protocol):
    def allocated(self) -> int: ...
    def peak_allocated(self) -> int: ...
    def peak_reserved(self) -> int: ...
    def start_steady_state(self) -> None: ...
    def reset_peaks(self) -> None: ...
    def graph_pool(self) -> int | None: ...


class CudaAllocator:
    """torch.cuda's caching allocator on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def peak_allocated(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)

    def peak_reserved(self) -> int:
        return torch.cuda.max_memory_reserved(self.device)

    def start_steady_state(self) -> None:
        """Forget the warm-up's one-time transients (autotuning, workspaces): release the cached blocks they
        left and reset the peaks, so the timed epochs report their own."""
        release_cached_memory(self.device)
        self.reset_peaks()

    def reset_peaks(self) -> None:
        """The peaks from here on, the cached blocks kept."""
        torch.cuda.reset_peak_memory_stats(self.device)

    def graph_pool(self) -> int | None:
        """Bytes that CUDA graphs' private pools hold beyond their live tensors: the captured steps'
        activations and temporaries (and their blocks' rounding). None where the allocator has no snapshot
        (the cudaMallocAsync backend); 0 without a captured graph."""
        try:
            segments = torch.cuda.memory_snapshot()
        except Exception:  # the backend cannot say; the caller notes it
            return None
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        return sum(
            int(segment["total_size"]) - int(segment["allocated_size"])
            for segment in segments
            if segment.get("device") == index and tuple(segment.get("segment_pool_id", (0, 0))) != (0, 0)
        )  # (0, 0) is the default pool; bench makes no pools but CUDA graphs' (its own and torch.compile's)


def allocator_for(device: torch.device) -> Allocator | None:
    """The device's allocator, or None where memory is not counted per tensor (the CPU: peak RSS instead)."""
    return CudaAllocator(device) if device.type == "cuda" else None


def _bytes(tensors: Iterable[object]) -> int:
    return sum(t.nbytes for t in tensors if isinstance(t, torch.Tensor))


def persistent_sizes(model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset_bytes: int) -> dict[str, int]:
    """Bytes of the tensors that live through the whole run, by their sizes (call after the warm-up)."""
    params = list(model.parameters())
    state = [value for per_param in optimizer.state.values() for value in per_param.values()]
    return {
        "params": _bytes(params),
        "grads": _bytes(p.grad for p in params),
        # Adam's moments; a step count that lives on the CPU (non-capturable Adam) is not device memory.
        "optimizer": _bytes(t for t in state if isinstance(t, torch.Tensor) and t.device == params[0].device),
        "dataset": dataset_bytes,
    }


def breakdown(
    sizes: dict[str, int], baseline: int, peak_allocated: int, peak_reserved: int, graph_pool: int = 0
) -> dict[str, float]:
    """The parts in MB (2**20 bytes), adding up to the peaks by construction (see the module docstring).

    ``peak_allocated`` is torch's; ``graph_pool`` (CUDA graphs' pools beyond their live tensors) is added to it
    for the ``peak_allocated_mb`` reported, and comes out of the reserve."""
    named = sum(sizes.values())
    parts = {
        **sizes,
        "other_persistent": baseline - named,
        "activations": peak_allocated - baseline,
        "graph_pool": graph_pool,
        "reserve": peak_reserved - peak_allocated - graph_pool,
    }
    out = {f"{key}_mb": parts[key] / MIB for key in PARTS}
    out.update(
        baseline_mb=baseline / MIB,
        peak_allocated_mb=(peak_allocated + graph_pool) / MIB,
        peak_reserved_mb=peak_reserved / MIB,
    )
    return out


def sizes_mb(sizes: dict[str, int]) -> dict[str, float]:
    """The persistent parts alone, in MB: what a CPU run can say (its peak is RSS, not per tensor)."""
    return {f"{key}_mb": value / MIB for key, value in sizes.items()}

"""Loaders turn a split's uint8 arrays into batches on the training device.

Each is a class selected by ``conf/loader/<name>.yaml`` through ``_target_``. They share one constructor
signature: the run passes the data and ``device``, ``batch_size``, ``shuffle``, ``channels_last``; the YAML
gives the loader's own options. Every loader sees the same seeded order per epoch and applies the lab's
ToTensor + Normalize arithmetic, so on the CPU every loader trains the same model bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision import transforms

from bench import interrupts
from bench.schema import instantiate

# The lab's data path: ToTensor, then Normalize(mean 0.5, std 0.5) per channel.
MEAN = 0.5
STD = 0.5


class BatchSource:
    """Batches of one split in a seeded order per epoch: fetched by :meth:`batches`, then placed on the
    training device by :meth:`to_device`. The two are separate so that the time spent waiting on the
    data path can be measured apart from the host-to-device copy, which on CUDA waits for the GPU.
    """

    samples: int
    batch_size: int
    #: bytes this source keeps on the training device (the resident dataset); 0 when it streams.
    device_bytes: int = 0
    #: config keys this loader does not use, each with why where it is not plain (else ""), recorded in
    #: metrics.json's notes
    ignored: dict[str, str]
    #: whether :meth:`to_device` copies each batch to the device (else batches are made there)
    copies: bool = False
    #: whether those copies leave the host free (from pinned memory); a blocking copy waits for the GPU
    non_blocking: bool = False

    def __init__(
        self, x: np.ndarray, y: np.ndarray, *, device: torch.device, batch_size: int, shuffle: bool,
        channels_last: bool = False,
    ) -> None:  # fmt: skip
        self.samples, self.batch_size = len(x), batch_size
        self.device, self.shuffle, self.channels_last = device, shuffle, channels_last
        self.ignored = {}

    def __len__(self) -> int:
        return -(-self.samples // self.batch_size)

    def batches(self, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the split: in the order ``seed`` gives when shuffling, else in stored order."""
        raise NotImplementedError

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A fetched batch, ready for the model (a no-op where batches are made on the device)."""
        return x, y

    def device_batches(self, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`batches` placed on the device, for code that does not time the two apart."""
        for x, y in self.batches(seed):
            yield self.to_device(x, y)

    def close(self) -> None:
        """Release worker processes and device memory."""


def build_loader(
    node: DictConfig, x: np.ndarray, y: np.ndarray, *, device: torch.device, batch_size: int, shuffle: bool,
    channels_last: bool = False,
) -> BatchSource:  # fmt: skip
    """Instantiate the configured loader over one split."""
    return instantiate(node, x, y, device=device, batch_size=batch_size, shuffle=shuffle, channels_last=channels_last)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch; every loader uses it, so every loader sees the same order on CPU."""
    return seed * 1_000_003 + epoch


class LabTransform(Dataset):
    """The lab's per-sample path: uint8 HWC → PIL image → ToTensor → Normalize(0.5, 0.5)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,) * 3, (STD,) * 3)])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


class DataLoaderSource(BatchSource):
    """torch's DataLoader over :class:`LabTransform`, with the lab's knobs (workers, pinning, persistence)."""

    copies = True

    def __init__(
        self, x: np.ndarray, y: np.ndarray, *, device: torch.device, batch_size: int, shuffle: bool,
        channels_last: bool = False, workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False,
        prefetch_factor: int | None = None, non_blocking: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(x, y, device=device, batch_size=batch_size, shuffle=shuffle, channels_last=channels_last)
        data = LabTransform(x, y)
        pin = pin_memory and device.type == "cuda"
        # What the DataLoader does not use here, recorded: pinning is for copies to a GPU, and persistence and
        # prefetching are the worker processes'.
        self.ignored = {
            **({"loader.pin_memory": "pinned memory speeds copies to a GPU"} if pin_memory and not pin else {}),
            **{f"loader.{key}": "it applies to worker processes, and workers=0"
               for key, asked in (("persistent_workers", persistent_workers), ("prefetch_factor", prefetch_factor))
               if asked not in (False, None) and workers == 0},
        }  # fmt: skip
        # An asynchronous copy is only asynchronous from pinned memory.
        self.non_blocking = pin and non_blocking
        # RandomSampler with a generator we reseed per epoch: the order depends on (seed, epoch) only.
        self._order = torch.Generator()
        sampler = RandomSampler(data, generator=self._order) if shuffle else SequentialSampler(data)
        extra: dict[str, object] = {}
        if workers > 0:
            extra["worker_init_fn"] = interrupts.quiet_worker  # no thread's traceback when Ctrl-C cuts a hand-over
            extra["persistent_workers"] = persistent_workers
            if prefetch_factor is not None:
                extra["prefetch_factor"] = prefetch_factor
        self._loader: DataLoader | None = DataLoader(
            data, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin, **extra
        )

    def batches(self, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._loader is None:
            raise RuntimeError("batches() after close()")
        if seed is not None:
            self._order.manual_seed(seed)
        yield from self._loader

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=self.non_blocking)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=self.non_blocking)

    def close(self) -> None:
        # Dropping the loader drops its (persistent) iterator, whose finalizer stops the workers.
        self._loader = None


def normalize(images: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """A uint8 NHWC batch → normalized float NCHW, by the very operations ToTensor + Normalize apply."""
    x = images.permute(0, 3, 1, 2)  # a channels_last view of the same memory
    if not channels_last:
        x = x.contiguous()
    # One float copy, then in place: .div(255) made a second, which doubled the resident loader's peak for a moment.
    return x.to(torch.float32, copy=True).div_(255).sub_(MEAN).div_(STD)


class ResidentSource(BatchSource):
    """The whole dataset on the training device, shuffled by index there.

    Same math as the lab's per-sample path (see :func:`normalize`), with no per-sample Python and no
    host-to-device copy per batch: what is left is the model's own work. ``normalized`` (the default)
    normalizes the whole dataset once, on the device: 4 bytes an image value instead of 1, and no normalize
    kernels per batch; the values are the same, element for element. ``workers`` is unused (recorded).
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, *, device: torch.device, batch_size: int, shuffle: bool,
        channels_last: bool = False, workers: int = 0, normalized: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(x, y, device=device, batch_size=batch_size, shuffle=shuffle, channels_last=channels_last)
        images = torch.from_numpy(x).to(device)
        self.x = normalize(images, channels_last=channels_last) if normalized else images
        self.normalized = normalized
        self.y = torch.from_numpy(y).to(device)
        self.device_bytes = self.x.nbytes + self.y.nbytes
        self.ignored = {"workers": ""} if workers else {}
        self._deferred = False

    def defer(self) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches of indices from now on, and return the gather that makes them a batch: the step
        calls it, so a captured step (step.compile=max) replays the gather and normalization too."""
        self._deferred = True
        return lambda ix, iy: (self._images(ix), self.y[iy])

    def _images(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.normalized:
            return normalize(self.x[idx], channels_last=self.channels_last)
        batch = self.x[idx]
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    def batches(self, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = None
        if self.shuffle and seed is not None:
            # On the CPU this is the very permutation RandomSampler draws for the same seed.
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
            order = torch.randperm(self.samples, generator=generator, device=self.device)
        elif self._deferred:
            order = torch.arange(self.samples, device=self.device)
        for start in range(0, self.samples, self.batch_size):
            if order is None:
                xb = self.x[start : start + self.batch_size]
                if not self.normalized:
                    xb = normalize(xb, channels_last=self.channels_last)
                yield xb, self.y[start : start + self.batch_size]
            elif self._deferred:
                idx = order[start : start + self.batch_size]
                yield idx, idx
            else:
                idx = order[start : start + self.batch_size]
                yield self._images(idx), self.y[idx]

    def close(self) -> None:
        self.x = self.y = torch.empty(0)

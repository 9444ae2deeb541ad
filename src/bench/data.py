"""Datasets as uint8 arrays, and the loaders that feed them to the training loop.

Every dataset becomes the same thing, ``(N, 32, 32, 3)`` uint8 images plus int64 labels for a train and a
test split, so one code path serves them all (DESIGN.md §5). Loaders turn those arrays into batches on the
training device; the registries below are what the ``dataset`` and ``loader`` config groups name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision import transforms

from bench.errors import DatasetUnavailable

log = logging.getLogger(__name__)

IMAGE_SIZE = 32
# The lab's data path: ToTensor, then Normalize(mean 0.5, std 0.5) per channel.
MEAN = 0.5
STD = 0.5


@dataclass(frozen=True)
class Arrays:
    """A dataset as it sits in memory: images (N, 32, 32, 3) uint8 and labels (N,) int64 per split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


DATASETS: dict[str, Callable[[DictConfig], Arrays]] = {}


def dataset(name: str) -> Callable[[Callable[[DictConfig], Arrays]], Callable[[DictConfig], Arrays]]:
    """Make a reader selectable as ``dataset=<name>``."""

    def add(fn: Callable[[DictConfig], Arrays]) -> Callable[[DictConfig], Arrays]:
        DATASETS[name] = fn
        return fn

    return add


def load_arrays(cfg: DictConfig) -> Arrays:
    """Read the configured dataset and apply the deterministic train/test subsets."""
    arrays = DATASETS[cfg.dataset.name](cfg)
    train_x, train_y = _subset(arrays.train_x, arrays.train_y, cfg.dataset.train_size, "train_size")
    test_x, test_y = _subset(arrays.test_x, arrays.test_y, cfg.dataset.test_size, "test_size")
    return Arrays(train_x, train_y, test_x, test_y, arrays.classes)


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, key: str) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n == len(x):
        return x, y
    if n > len(x):
        raise DatasetUnavailable(f"dataset.{key}={n} is more than the {len(x)} images available")
    # A fixed seed, not cfg.seed: the subset is part of the data, the same whatever the training seed.
    keep = np.sort(np.random.default_rng(0).permutation(len(x))[:n])
    return x[keep], y[keep]


# --------------------------------------------------------------------------------------------- datasets


@dataset("synthetic")
def synthetic(cfg: DictConfig) -> Arrays:
    """CIFAR-10-shaped images whose class shows in smooth colour patterns under heavy noise.

    Each class owns a few low-frequency templates; an image is 1/8 template and 7/8 uniform noise, so a CNN
    learns it well above chance but not instantly (MediumNet: about 90% after 3 epochs, loss falling from
    about 1.5, much like CIFAR-10). 60,000 images take about a quarter of a second.
    """
    n_train = cfg.dataset.train_size or 50_000
    n_test = cfg.dataset.test_size or 10_000
    rng = np.random.default_rng(cfg.seed)
    classes, variants = 10, 4
    coarse = torch.from_numpy(rng.uniform(0, 255, (classes * variants, 3, 4, 4)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
    templates = smooth.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, classes, n)
        images = templates[labels * variants + rng.integers(0, variants, n)]
        noise = np.frombuffer(rng.bytes(images.size), dtype=np.uint8).reshape(images.shape).copy()
        images >>= 3
        noise >>= 3
        noise *= 7
        images += noise  # at most 31 + 7 * 31 = 248: uint8 arithmetic cannot overflow
        return images, labels.astype(np.int64)

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    # Generated at the requested size already: load_arrays' subset step has nothing left to do.
    return Arrays(train_x, train_y, test_x, test_y, tuple(f"class{i}" for i in range(classes)))


@dataset("cifar10")
def cifar10(cfg: DictConfig) -> Arrays:
    """torchvision's CIFAR-10 reader: extracted batches in data_dir, else the archive, else a download."""
    from torchvision.datasets import CIFAR10

    root = Path(cfg.data_dir)
    try:
        train = CIFAR10(root=str(root), train=True, download=cfg.dataset.download)
        test = CIFAR10(root=str(root), train=False, download=False)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        reason = str(getattr(err, "reason", err)).splitlines()[0] if str(err) else type(err).__name__
        raise DatasetUnavailable(
            f"CIFAR-10 is not in {root}/ and could not be fetched ({reason}); "
            f"put cifar-10-python.tar.gz in {root}/ or use dataset=synthetic"
        ) from err
    return Arrays(
        np.ascontiguousarray(train.data),
        np.asarray(train.targets, dtype=np.int64),
        np.ascontiguousarray(test.data),
        np.asarray(test.targets, dtype=np.int64),
        tuple(train.classes),
    )


@dataset("imagefolder")
def imagefolder(cfg: DictConfig) -> Arrays:
    """A user's own images in ImageFolder layout, decoded once and cached under data_dir."""
    from torchvision.datasets import ImageFolder

    root = Path(cfg.dataset.root).expanduser()
    missing = [p for p in (root / "train", root / "test") if not p.is_dir()]
    if missing:
        raise DatasetUnavailable(
            f"dataset.root={root} needs train/<class>/ and test/<class>/ folders; missing: "
            + ", ".join(str(p) for p in missing)
        )
    try:
        train, test = ImageFolder(str(root / "train")), ImageFolder(str(root / "test"))
    except (FileNotFoundError, OSError) as err:
        raise DatasetUnavailable(f"cannot read images under {root}: {err}") from err
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise DatasetUnavailable(f"test/ has classes that train/ lacks: {', '.join(unknown)}")

    cache = Path(cfg.data_dir) / "imagefolder-cache" / f"{_folder_key(root, train, test)}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return Arrays(z["train_x"], z["train_y"], z["test_x"], z["test_y"], tuple(train.classes))

    log.info("Decoding %d images from %s (cached in %s)", len(train) + len(test), root, cache.parent)
    train_x, train_y = _decode(train.samples)
    # Test labels use train's class indices, so a class missing from test/ does not shift the others.
    test_x, test_y = _decode([(p, train.class_to_idx[test.classes[i]]) for p, i in test.samples])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    tmp.replace(cache)
    return Arrays(train_x, train_y, test_x, test_y, tuple(train.classes))


def _folder_key(root: Path, *folders: object) -> str:
    """Key the cache by every file's path, size and modification time: an edit anywhere makes a new key."""
    digest = hashlib.sha256(f"{IMAGE_SIZE}".encode())
    for folder in folders:
        for path, label in folder.samples:  # type: ignore[attr-defined]
            st = Path(path).stat()
            digest.update(json.dumps([str(Path(path).relative_to(root)), label, st.st_size, st.st_mtime_ns]).encode())
    return digest.hexdigest()[:16]


def _decode(samples: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(samples), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as img:
                images[i] = np.asarray(img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
        except OSError as err:
            raise DatasetUnavailable(f"cannot decode image {path}: {err}") from err
    return images, np.asarray([label for _, label in samples], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- loaders


class BatchSource:
    """Batches of one split in a seeded order per epoch: fetched by :meth:`batches`, then placed on the
    training device by :meth:`to_device`. The two are separate so that the time spent waiting on the
    data path can be measured apart from the host-to-device copy, which on CUDA waits for the GPU.
    """

    samples: int
    batch_size: int
    #: bytes this source keeps on the training device (the resident dataset); 0 when it streams.
    device_bytes: int = 0
    #: config keys this loader does not use, recorded in metrics.json.
    ignored: tuple[str, ...] = ()

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


LOADERS: dict[str, type[BatchSource]] = {}


def loader(name: str) -> Callable[[type[BatchSource]], type[BatchSource]]:
    """Make a BatchSource selectable as ``loader=<name>``."""

    def add(cls: type[BatchSource]) -> type[BatchSource]:
        LOADERS[name] = cls
        return cls

    return add


def build_source(
    cfg: DictConfig,
    x: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    *,
    shuffle: bool,
    channels_last: bool = False,
) -> BatchSource:
    return LOADERS[cfg.loader.name](cfg, x, y, device, shuffle=shuffle, channels_last=channels_last)


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


@loader("dataloader")
class DataLoaderSource(BatchSource):
    """torch's DataLoader over :class:`LabTransform`, with the lab's knobs (workers, pinning, persistence)."""

    def __init__(
        self,
        cfg: DictConfig,
        x: np.ndarray,
        y: np.ndarray,
        device: torch.device,
        *,
        shuffle: bool,
        channels_last: bool = False,
    ) -> None:
        data = LabTransform(x, y)
        self.samples, self.batch_size = len(data), cfg.batch_size
        self.device, self.channels_last = device, channels_last
        pin = bool(cfg.loader.pin_memory) and device.type == "cuda"
        # An asynchronous copy is only asynchronous from pinned memory.
        self.non_blocking = pin and bool(cfg.step.non_blocking)
        # RandomSampler with a generator we reseed per epoch: the order depends on (seed, epoch) only.
        self._order = torch.Generator()
        sampler = RandomSampler(data, generator=self._order) if shuffle else SequentialSampler(data)
        extra: dict[str, object] = {}
        if cfg.workers > 0:
            extra["persistent_workers"] = bool(cfg.loader.persistent_workers)
            if cfg.loader.prefetch_factor is not None:
                extra["prefetch_factor"] = cfg.loader.prefetch_factor
        self._loader: DataLoader | None = DataLoader(
            data, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers, pin_memory=pin, **extra
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
    return x.to(torch.float32).div(255).sub_(MEAN).div_(STD)


@loader("resident")
class ResidentSource(BatchSource):
    """The whole uint8 dataset on the training device, shuffled by index and normalized there.

    Same math as the lab's per-sample path (see :func:`normalize`), with no per-sample Python and no
    host-to-device copy per batch: what is left is the model's own work. ``workers`` is unused.
    """

    def __init__(
        self,
        cfg: DictConfig,
        x: np.ndarray,
        y: np.ndarray,
        device: torch.device,
        *,
        shuffle: bool,
        channels_last: bool = False,
    ) -> None:
        self.samples, self.batch_size = len(x), cfg.batch_size
        self.device, self.shuffle, self.channels_last = device, shuffle, channels_last
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(y).to(device)
        self.device_bytes = self.x.nbytes + self.y.nbytes
        self.ignored = ("workers",) if cfg.workers else ()

    def batches(self, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = None
        if self.shuffle and seed is not None:
            # On the CPU this is the very permutation RandomSampler draws for the same seed.
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
            order = torch.randperm(self.samples, generator=generator, device=self.device)
        for start in range(0, self.samples, self.batch_size):
            if order is None:
                xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            yield normalize(xb, channels_last=self.channels_last), yb

    def close(self) -> None:
        self.x = self.y = torch.empty(0)

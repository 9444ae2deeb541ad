"""Datasets as uint8 arrays: synthetic, CIFAR-10 (torchvision) and a user's image folder.

Every dataset becomes the same thing, ``(N, 32, 32, 3)`` uint8 images plus int64 labels for a train and a
test split, and its class names, so one code path serves them all. Each is a function selected by
``conf/dataset/<name>.yaml`` through ``_target_``; its YAML gives its arguments. ``train_size`` and
``test_size`` take a deterministic subset (the synthetic set is generated at that size).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from bench.errors import DatasetUnavailable, UsageError, one_line
from bench.folders import first_missing, make_writable, remove_empty
from bench.schema import instantiate

log = logging.getLogger(__name__)

IMAGE_SIZE = 32


@dataclass(frozen=True)
class Arrays:
    """A dataset as it sits in memory: images (N, 32, 32, 3) uint8 and labels (N,) int64 per split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    #: what the loading found that a run on it records (files left out, images read nearly black)
    notes: tuple[str, ...] = ()

    def subset(self, train_size: int | None, test_size: int | None) -> Arrays:
        """The same data cut to deterministic subsets (None keeps a split whole)."""
        train_x, train_y = _subset(self.train_x, self.train_y, train_size, "train_size")
        test_x, test_y = _subset(self.test_x, self.test_y, test_size, "test_size")
        return Arrays(train_x, train_y, test_x, test_y, self.classes, self.notes)


def load_arrays(node: DictConfig) -> Arrays:
    """Call the configured dataset function with the arguments its YAML gives."""
    return instantiate(node)


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, key: str) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n == len(x):
        return x, y
    if n > len(x):
        raise DatasetUnavailable(f"dataset.{key}={n} is more than the {len(x)} images available")
    # A fixed seed, not the run's seed: the subset is part of the data, the same whatever the training seed.
    keep = np.sort(np.random.default_rng(0).permutation(len(x))[:n])
    return x[keep], y[keep]


#: images drawn per generator: a synthetic split is these chunks, the last cut short
SYNTHETIC_CHUNK = 1024


def synthetic(seed: int, train_size: int, test_size: int) -> Arrays:
    """CIFAR-10-shaped images whose class shows in smooth colour patterns under heavy noise.

    Each class owns a few low-frequency templates; an image is 1/8 template and 7/8 uniform noise, so a CNN
    learns it well above chance but not instantly (MediumNet: about 90% after 3 epochs, loss falling from
    about 1.1, much like CIFAR-10). 60,000 images take about a second on a 2-core CPU (0.7-1.0 s measured).
    """
    classes, variants = 10, 4
    rng = np.random.default_rng([seed, 2])
    coarse = torch.from_numpy(rng.uniform(0, 255, (classes * variants, 3, 4, 4)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
    templates = smooth.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()

    def split(which: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        # Each split from its own generators, a fixed-size chunk each: image i is the same whatever n and
        # whatever the other split's size, so a train_size sweep trains on nested sets and tests on one set.
        x, y = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8), np.empty(n, np.int64)
        for start in range(0, n, SYNTHETIC_CHUNK):
            chunk = np.random.default_rng([seed, which, start // SYNTHETIC_CHUNK])
            m = min(SYNTHETIC_CHUNK, n - start)
            labels = chunk.integers(0, classes, SYNTHETIC_CHUNK)[:m]
            images = templates[labels * variants + chunk.integers(0, variants, SYNTHETIC_CHUNK)[:m]]
            noise = np.frombuffer(chunk.bytes(SYNTHETIC_CHUNK * images[0].size), np.uint8)[: images.size]
            noise = noise.reshape(images.shape) >> 3
            noise *= 7
            images >>= 3
            images += noise  # at most 31 + 7 * 31 = 248: uint8 arithmetic cannot overflow
            x[start : start + m], y[start : start + m] = images, labels
        return x, y

    train_x, train_y = split(0, train_size)
    test_x, test_y = split(1, test_size)
    return Arrays(train_x, train_y, test_x, test_y, tuple(f"class{i}" for i in range(classes)))


def cifar10(root: str, download: bool = True, train_size: int | None = None, test_size: int | None = None) -> Arrays:
    """torchvision's CIFAR-10 reader: extracted batches in ``root``, else the archive, else a download."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    root = Path(root)
    if root.exists() and not root.is_dir():  # "could not be fetched ([Errno 17] File exists)" said nothing of it
        raise DatasetUnavailable(f"data_dir={root} is a file, not a folder; CIFAR-10 goes in a folder")
    batches = root / CIFAR10.base_folder  # where torchvision reads the extracted batches
    if root.name == CIFAR10.base_folder and (root / "data_batch_1").exists() and not batches.exists():
        # The extracted folder itself: torchvision looks for it inside data_dir, and would fetch 170 MB into it.
        raise DatasetUnavailable(f"data_dir={root} is CIFAR-10's extracted folder itself; set data_dir to the folder "
                                 f"that holds it (data_dir={root.parent})")  # fmt: skip
    made = first_missing(root)  # the folder a download attempt creates, to be taken back if it fails
    try:
        train = CIFAR10(root=str(root), train=True, download=download)
        test = CIFAR10(root=str(root), train=False, download=False)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        remove_empty(root, made)
        archive = root / CIFAR10.filename
        if archive.is_file() and not check_integrity(str(archive), CIFAR10.tgz_md5):
            raise DatasetUnavailable(
                f"{archive} is corrupt (not CIFAR-10's archive: its checksum differs); delete it and put the "
                "real cifar-10-python.tar.gz there, or use dataset=synthetic"
            ) from err
        if batches.is_dir() and not archive.is_file():  # extracted, but not all there: no fetch was the cause
            raise DatasetUnavailable(
                f"{batches}/ is incomplete or corrupt (its files' checksums differ); delete it and put "
                f"cifar-10-python.tar.gz in {root}/, or use dataset=synthetic"
            ) from err
        if not download:  # torchvision's "You can use download=True" names no bench setting
            raise DatasetUnavailable(
                f"CIFAR-10 is not in {root}/ (and dataset.download=false); put cifar-10-python.tar.gz in {root}/ "
                "or use dataset=synthetic"
            ) from err
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
    ).subset(train_size, test_size)


def imagefolder(root: str, cache_dir: str, train_size: int | None = None, test_size: int | None = None) -> Arrays:
    """A user's own images in ImageFolder layout, decoded once and cached in ``cache_dir``."""
    from torchvision.datasets import ImageFolder

    root = Path(root).expanduser()
    missing = [p for p in (root / "train", root / "test") if not p.is_dir()]
    if missing:
        raise DatasetUnavailable(
            f"dataset.root={root} needs train/<class>/ and test/<class>/ folders; missing: "
            + ", ".join(str(p) for p in missing)
        )
    for split in ("train", "test"):
        _refuse_link_loops(root / split)

    class Visible(ImageFolder):
        """ImageFolder without hidden folders: a notebook's .ipynb_checkpoints/ beside the class folders had
        become a class of its own (3 outputs, chance 1/3), or, empty, a refusal naming no split."""

        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
            if not classes:
                raise FileNotFoundError(f"no class folder in {directory}")
            return classes, {name: i for i, name in enumerate(classes)}

    splits = []
    for split in ("train", "test"):
        try:
            splits.append(Visible(str(root / split)))
        except (FileNotFoundError, OSError) as err:
            raise DatasetUnavailable(f"cannot read images under {root / split}: {err}") from err
    train, test = splits
    if len(train.classes) < 2:  # one class trains to a loss of 0 at once: a benchmark of nothing to learn
        raise DatasetUnavailable(f"dataset.root={root}: train/ has {len(train.classes)} class folder "
                                 f"({', '.join(train.classes)}); a classifier needs at least 2")  # fmt: skip
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise DatasetUnavailable(f"test/ has classes that train/ lacks: {', '.join(unknown)}")
    notes = tuple(note for note in (_warn_skipped(folder) for folder in (train, test)) if note)

    classes = tuple(train.classes)
    cache = Path(cache_dir) / f"{_folder_key(root, train, test)}.npz"
    cached = _read_cache(cache, classes)
    if cached is not None:
        return dataclasses.replace(cached, notes=notes + cached.notes).subset(train_size, test_size)
    try:  # before decoding every image, not after: say now if the cache cannot be written
        make_writable(cache.parent, "dataset.cache_dir")  # data_dir only by default
    except UsageError as err:
        raise DatasetUnavailable(f"{err}; the decoded images are cached there") from None

    log.info("Decoding %d images from %s (cached in %s)", len(train) + len(test), root, cache.parent)
    train_x, train_y, dark = _decode(train.samples)
    # Test labels use train's class indices, so a class missing from test/ does not shift the others.
    test_x, test_y, dark_test = _decode([(p, train.class_to_idx[test.classes[i]]) for p, i in test.samples])
    low_bits = [*dark, *dark_test]
    notes += tuple(note for note in [_warn_low_bits(low_bits)] if note)
    fd, tmp = tempfile.mkstemp(prefix=".cache.", suffix=".npz", dir=cache.parent)  # concurrent jobs may race
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                     low_bits=np.array(low_bits, dtype=str))  # fmt: skip
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Arrays(train_x, train_y, test_x, test_y, classes, notes).subset(train_size, test_size)


def _refuse_link_loops(top: Path) -> None:
    """Refuse a split in which links lead to one folder twice: ImageFolder follows links and would read its images
    twice, and through a loop (a link back up the tree, or two folders linked to each other) again and again: it
    walked for minutes, gigabytes deep, before anything was said. The walk stops at the first folder met again."""
    seen = {os.path.realpath(top): str(top)}
    for folder, subfolders, _ in os.walk(top, followlinks=True):
        here = os.path.realpath(folder)
        for name in subfolders:
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if real in seen:
                above = here == real or here.startswith(real.rstrip(os.sep) + os.sep)
                how = "a folder above it" if above else f"as {seen[real]} does"
                raise DatasetUnavailable(f"{path} leads to {real}, {how}: ImageFolder would read the images there "
                                         "more than once (through a loop, for ever); remove the link")  # fmt: skip
            seen[real] = path


def _warn_skipped(folder: object) -> str | None:
    """Say which files in the class folders ImageFolder left out (extensions it does not read: .gif, .svg, …):
    it skips them without a word, and a folder of mixed formats would train on part of itself. Hidden files
    (.DS_Store) are left out of the count."""
    root = Path(folder.root)  # type: ignore[attr-defined]
    read = {os.path.normpath(path) for path, _ in folder.samples}  # type: ignore[attr-defined]
    skipped: dict[str, int] = {}
    for cls in folder.classes:  # type: ignore[attr-defined]
        for top, _, files in os.walk(root / cls, followlinks=True):  # as ImageFolder walks them
            for name in files:
                if not name.startswith(".") and os.path.normpath(os.path.join(top, name)) not in read:
                    suffix = Path(name).suffix.lower() or "(no extension)"
                    skipped[suffix] = skipped.get(suffix, 0) + 1
    if not skipped:
        return None
    kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    count = sum(skipped.values())
    note = (f"{root}: {count} file{'s' * (count > 1)} left out, of extensions torchvision's ImageFolder does not "
            f"read ({kinds})")  # fmt: skip
    log.warning("%s", note)
    return note


def _read_cache(cache: Path, classes: tuple[str, ...]) -> Arrays | None:
    """The cached arrays, or None when there is no cache or it is unreadable (then it is decoded again)."""
    if not cache.exists():
        return None
    try:
        with np.load(cache) as z:
            arrays = Arrays(z["train_x"], z["train_y"], z["test_x"], z["test_y"], classes)
            low_bits = [str(p) for p in z["low_bits"]] if "low_bits" in z else []
        if arrays.train_x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or len(arrays.train_x) != len(arrays.train_y):
            raise ValueError("arrays of the wrong shape")
        note = _warn_low_bits(low_bits)
        return dataclasses.replace(arrays, notes=(note,)) if note else arrays
    except Exception as err:  # truncated, not a zip, arrays missing: whatever it is, it is rebuilt
        log.warning("The image cache %s is unreadable (%s); decoding the images again", cache, one_line(err))
        with contextlib.suppress(OSError):
            cache.unlink()
        return None


def _folder_key(root: Path, *folders: object) -> str:
    """Key the cache by every file's path, size and modification time: an edit anywhere makes a new key."""
    digest = hashlib.sha256(f"{IMAGE_SIZE}:{DECODING}".encode())
    for folder in folders:
        for path, label in folder.samples:  # type: ignore[attr-defined]
            st = Path(path).stat()
            digest.update(json.dumps([str(Path(path).relative_to(root)), label, st.st_size, st.st_mtime_ns]).encode())
    return digest.hexdigest()[:16]


#: how images are turned into 8-bit RGB, and what the cache holds: part of its key, so a change decodes again
DECODING = 3  # 3: the cache records which 16-bit images used at most 12 bits


#: 16-bit images whose every value is under this use at most 12 bits (a 12-bit sensor's, in a 16-bit file)
LOW_BITS_LIMIT = 4096


def _decode(samples: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The images as 8-bit RGB, their labels, and the 16-bit images among them that use only the low bits."""
    images = np.empty((len(samples), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    dark: list[str] = []
    for i, (path, _) in enumerate(samples):
        try:
            # Pillow's own warnings (a palette with transparency, a very large image) name no file: the log does.
            with warnings.catch_warnings(record=True) as said, Image.open(path) as img:
                warnings.simplefilter("always")
                rgb, low_bits = _rgb(img)
                images[i] = np.asarray(rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
            dark += [path] if low_bits else []
            for warning in said:
                log.warning("%s: %s", path, one_line(warning.message))
        except (OSError, Image.DecompressionBombError) as err:  # a bomb is too large to decode safely
            raise DatasetUnavailable(f"cannot decode image {path}: {one_line(err)}") from err
    return images, np.asarray([label for _, label in samples], dtype=np.int64), dark


def _warn_low_bits(dark: Sequence[str]) -> str | None:
    """12-bit data in 16-bit files is common (microscopes, X-rays), and its scale is not in the file: said on
    every load, from the cache too, since every run trains on what it decoded to, and recorded (the note)."""
    if not len(dark):
        return None
    n = len(dark)
    note = (f"{n} 16-bit image{'s' * (n > 1)} use{'s' * (n == 1)} at most 12 bits (values under {LOW_BITS_LIMIT}), "
            f"e.g. {dark[0]}: scaled as 16-bit, such images are nearly black (0-15 of 255); convert them to 8-bit "
            "with their own scale to train on what they show")  # fmt: skip
    log.warning("%s", note)
    return note


def _rgb(img: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB, and whether it was scaled down from 16 bits that used at most 12 of them (nearly black).

    Pillow's own conversion clips 16-bit greyscale to 255, which made a 16-bit PNG nearly all white: its
    values are scaled instead. A palette with transparency goes through RGBA, as Pillow advises."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(img, dtype=np.int64)
        top = values.max(initial=0)
        scaled = img.mode != "I" or top > 255  # "I" holds 8-bit values too, from some encoders
        if scaled:
            values = values >> 8
        rgb = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L").convert("RGB")
        return rgb, scaled and top < LOW_BITS_LIMIT
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB"), False

"""Datasets become uint8 arrays through one path: synthetic, CIFAR-10 (torchvision), imagefolder."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from bench.datasets import load_arrays
from bench.errors import DatasetUnavailable
from bench.loaders import build_loader, epoch_seed
from conftest import TINY, offline_env, only_run_dir, read_metrics, run_cli


def load(cfg):
    """The configured dataset's arrays, as a run reads them."""
    return load_arrays(cfg.dataset)


def train_loader(cfg, arrays, *, shuffle: bool):
    device = torch.device("cpu")
    return build_loader(cfg.loader, arrays.train_x, arrays.train_y, device=device, batch_size=cfg.batch_size,
                        shuffle=shuffle)  # fmt: skip


def _check_arrays(arrays, n_train: int, n_test: int) -> None:
    assert arrays.train_x.shape == (n_train, 32, 32, 3) and arrays.train_x.dtype == np.uint8
    assert arrays.test_x.shape == (n_test, 32, 32, 3) and arrays.test_x.dtype == np.uint8
    assert arrays.train_y.dtype == np.int64 and arrays.train_y.shape == (n_train,)
    assert arrays.test_y.dtype == np.int64 and arrays.test_y.shape == (n_test,)


# ------------------------------------------------------------------------------------------ synthetic


def test_synthetic_is_sized_deterministic_and_seeded(cfg_for) -> None:
    a = load(cfg_for("dataset.train_size=500", "dataset.test_size=100"))
    b = load(cfg_for("dataset.train_size=500", "dataset.test_size=100"))
    c = load(cfg_for("dataset.train_size=500", "dataset.test_size=100", "seed=1"))
    _check_arrays(a, 500, 100)
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.train_x, c.train_x)
    assert set(np.unique(a.train_y)) == set(range(10)) and len(a.classes) == 10
    # A train_size sweep trains on nested sets and tests on one: the test split used to be drawn after the
    # train split, from one stream, so every train_size had its own test images.
    d = load(cfg_for("dataset.train_size=1500", "dataset.test_size=100"))
    assert np.array_equal(a.test_x, d.test_x) and np.array_equal(a.test_y, d.test_y)
    assert np.array_equal(a.train_x, d.train_x[:500]) and np.array_equal(a.train_y, d.train_y[:500])


def test_synthetic_default_size_is_cifar10s(cfg_for) -> None:
    arrays = load(cfg_for(tiny=False))
    _check_arrays(arrays, 50_000, 10_000)


def test_synthetic_labels_are_learnable(cfg_for) -> None:
    # A nearest-class-mean classifier on raw pixels, fitted on train, is far above chance on test.
    arrays = load(cfg_for("dataset.train_size=5000", "dataset.test_size=1000"))
    x = arrays.train_x.reshape(len(arrays.train_x), -1).astype(np.float32)
    means = np.stack([x[arrays.train_y == k].mean(0) for k in range(10)])
    t = arrays.test_x.reshape(len(arrays.test_x), -1).astype(np.float32)
    pred = ((t[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == arrays.test_y).mean() > 0.3


# ------------------------------------------------------------------------------------------- cifar10


def _write_tiny_cifar(root: Path, n_per_batch: int = 6, n_test: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 archive in the dataset's own format (pickled batches of CHW rows), just very small."""
    rng = np.random.default_rng(0)
    folder = root / "build" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows: list[np.ndarray] = []

    def batch(name: str, n: int) -> None:
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        rows.append(data)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels, "filenames": [""] * n}, f)

    for i in range(1, 6):
        batch(f"data_batch_{i}", n_per_batch)
    batch("test_batch", n_test)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": n_per_batch}, f)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    train = np.concatenate(rows[:5]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    test = rows[5].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return train, test


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar10_reads_an_archive_put_in_data_dir(cfg_for, tmp_path: Path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    train, test = _write_tiny_cifar(data_dir)
    # torchvision checks the real archive's checksums; teach it the tiny archive's instead.
    built = data_dir / "build" / "cifar-10-batches-py"
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(data_dir / "cifar-10-python.tar.gz"))
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", _md5(built / f"data_batch_{i}")] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(built / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(built / "batches.meta")})

    arrays = load(
        cfg_for("dataset=cifar10", f"data_dir={data_dir}", "dataset.train_size=null", "dataset.test_size=null")
    )
    _check_arrays(arrays, 30, 8)
    assert np.array_equal(arrays.train_x, train) and np.array_equal(arrays.test_x, test)
    assert arrays.classes[0] == "airplane"

    sub = load(cfg_for("dataset=cifar10", f"data_dir={data_dir}", "dataset.train_size=10", "dataset.test_size=4"))
    again = load(cfg_for("dataset=cifar10", f"data_dir={data_dir}", "dataset.train_size=10", "dataset.test_size=4"))
    _check_arrays(sub, 10, 4)
    assert np.array_equal(sub.train_x, again.train_x)  # subsets are deterministic


def test_cifar10_without_archive_or_download_names_the_fix(cfg_for, tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="put cifar-10-python.tar.gz in .* or use dataset=synthetic"):
        load(cfg_for("dataset=cifar10", f"data_dir={tmp_path}", "dataset.download=false"))
    # data_dir at the extracted folder itself: "put the archive in it" was the wrong fix.
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_text("x")
    with pytest.raises(DatasetUnavailable) as err:
        load(cfg_for("dataset=cifar10", f"data_dir={tmp_path / 'cifar-10-batches-py'}", "dataset.download=false"))
    assert str(err.value) == (f"data_dir={tmp_path / 'cifar-10-batches-py'} is CIFAR-10's extracted folder itself; "
                              f"set data_dir to the folder that holds it (data_dir={tmp_path})")  # fmt: skip


def test_a_failed_cifar10_download_leaves_no_folders_behind(cfg_for, tmp_path: Path, monkeypatch) -> None:
    for proxy in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):  # offline, whatever the machine
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    with pytest.raises(DatasetUnavailable, match="could not be fetched"):
        load(cfg_for("dataset=cifar10", f"data_dir={tmp_path / 'typo' / 'deep'}"))
    assert list(tmp_path.iterdir()) == []  # torchvision had made typo/deep/ for the archive


def test_a_subset_larger_than_the_dataset_is_an_error(cfg_for, tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    with pytest.raises(DatasetUnavailable, match="train_size=99 is more than the 6 images"):
        load(
            cfg_for(
                "dataset=imagefolder",
                f"dataset.root={root}",
                f"data_dir={tmp_path}",
                "dataset.train_size=99",
                "dataset.test_size=null",
            )
        )


# --------------------------------------------------------------------------------------- imagefolder


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cats", "dogs"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                size = (40 + 8 * i, 24 + 4 * i)  # not 32x32, and not square: must be resized
                img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / cls / f"{i}.png")
    (root / "test" / "dogs" / "2.png").write_bytes((root / "test" / "dogs" / "0.png").read_bytes())
    return root


def test_imagefolder_is_decoded_once_and_cached(cfg_for, tmp_path: Path, caplog) -> None:
    root = _image_folder(tmp_path / "imgs")
    cfg = cfg_for(
        "dataset=imagefolder",
        f"dataset.root={root}",
        f"data_dir={tmp_path / 'data'}",
        "dataset.train_size=null",
        "dataset.test_size=null",
    )
    with caplog.at_level(logging.INFO, logger="bench.datasets"):
        first = load(cfg)
        second = load(cfg)
    decoded = [r for r in caplog.records if r.getMessage().startswith("Decoding")]
    assert len(decoded) == 1
    _check_arrays(first, 6, 5)
    assert first.classes == ("cats", "dogs")
    assert list(first.test_y) == [0, 0, 1, 1, 1]
    assert np.array_equal(first.train_x, second.train_x)
    assert len(list((tmp_path / "data" / "imagefolder-cache").glob("*.npz"))) == 1

    # An added image changes the folder's content, so the cache key changes and it is decoded again.
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "train" / "cats" / "new.png")
    assert len(load(cfg).train_y) == 7
    assert len(list((tmp_path / "data" / "imagefolder-cache").glob("*.npz"))) == 2


def test_files_imagefolder_does_not_read_are_named(cfg_for, tmp_path: Path, caplog) -> None:
    # torchvision's ImageFolder skips a .gif without a word: a folder of mixed formats trained on part of itself.
    root = _image_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "train" / "cats" / "a.gif")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "train" / "dogs" / "b.gif")
    (root / "train" / "dogs" / "notes.txt").write_text("x")
    (root / "train" / "dogs" / ".DS_Store").write_text("x")  # a hidden file is nobody's image
    # nor a hidden folder a class: a notebook's checkpoints had become a third class (chance 1/3), or, empty, a
    # refusal naming no split
    (root / "train" / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "train" / ".ipynb_checkpoints" / "0.png")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    cfg = cfg_for("dataset=imagefolder", f"dataset.root={root}", f"data_dir={tmp_path / 'data'}",
                  "dataset.train_size=null", "dataset.test_size=null")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        arrays = load(cfg)
    assert len(arrays.train_y) == 6 and arrays.classes == ("cats", "dogs")
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert said == [f"{root / 'train'}: 3 files left out, of extensions torchvision's ImageFolder does not read "
                    "(2 .gif, 1 .txt)"]  # fmt: skip
    assert list(load(cfg).notes) == said  # recorded by a run on it, from the cache too
    (root / "test" / "birds").mkdir()  # a class folder without images: the refusal names its split
    with pytest.raises(DatasetUnavailable, match=f"^cannot read images under {root / 'test'}: Found no valid file "
                       "for the classes birds"):  # fmt: skip
        load(cfg)


def test_corrupt_extracted_cifar10_batches_are_named_not_fetched(tmp_path: Path) -> None:
    # "CIFAR-10 is not in d/ and could not be fetched": it was there, corrupt.
    (tmp_path / "d" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "d" / "cifar-10-batches-py" / "data_batch_1").write_text("x")
    proc = run_cli(tmp_path, *TINY, "dataset=cifar10", "data_dir=d")
    assert proc.returncode == 2, proc.stderr
    assert "d/cifar-10-batches-py/ is incomplete or corrupt (its files' checksums differ); delete it" in proc.stderr


def test_an_image_folder_of_one_class_is_refused(tmp_path: Path) -> None:
    # It trained to a loss of 0 and 100% accuracy, with a note that it "did not learn" (the loss of ln(1) = 0).
    root = _image_folder(tmp_path / "imgs")
    for split in ("train", "test"):
        shutil.rmtree(root / split / "dogs")
    proc = run_cli(tmp_path, *TINY, "dataset=imagefolder", f"dataset.root={root}", "batch_size=2",
                   "dataset.train_size=null", "dataset.test_size=null")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"bench: error: dataset.root={root}: train/ has 1 class folder (cats); a classifier needs at least 2"
    ]


def test_a_folder_reached_twice_through_links_is_refused_not_walked_for_ever(tmp_path: Path) -> None:
    # ImageFolder follows links: through train/cats/up -> .. it read every image again and again after a 28 s
    # walk; with two folders linked to each other twice over it walked for minutes, gigabytes deep, in silence.
    root = _image_folder(tmp_path / "imgs")
    (tmp_path / "elsewhere").mkdir()
    (root / "test" / "dogs" / "more").symlink_to(tmp_path / "elsewhere")  # a link elsewhere is walked, not refused

    def refusal(*links: tuple[str, str]) -> list[str]:
        for link, target in links:
            (root / link).symlink_to(target)
        proc = run_cli(tmp_path, *TINY, "dataset=imagefolder", f"dataset.root={root}", "batch_size=2",
                       "dataset.train_size=null", "dataset.test_size=null")  # fmt: skip
        for link, _ in links:
            (root / link).unlink()
        assert proc.returncode == 2, proc.stderr
        return proc.stderr.strip().splitlines()

    assert refusal(("train/cats/up", "..")) == [
        f"bench: error: {root}/train/cats/up leads to {root}/train, a folder above it: ImageFolder would read the "
        "images there more than once (through a loop, for ever); remove the link"
    ]
    crossed = refusal(("train/cats/x1", "../dogs"), ("train/cats/x2", "../dogs"), ("train/dogs/y1", "../cats"),
                      ("train/dogs/y2", "../cats"))  # fmt: skip
    assert len(crossed) == 1 and " does: ImageFolder would read the images there more than once" in crossed[0], crossed


def test_a_16_bit_greyscale_image_is_scaled_not_saturated(cfg_for, tmp_path: Path, caplog) -> None:
    # Pillow's conversion to RGB clips 16-bit values at 255: a 16-bit gradient came out 99% white, and trained.
    root = _image_folder(tmp_path / "imgs")
    gradient = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(gradient).save(root / "train" / "cats" / "0.png")  # first of the training images
    palette = Image.fromarray(np.zeros((32, 32), dtype=np.uint8), "P")
    palette.info["transparency"] = 0
    palette.save(root / "train" / "dogs" / "9.png", transparency=0)
    cfg = cfg_for("dataset=imagefolder", f"dataset.root={root}", f"data_dir={tmp_path / 'data'}",
                  "dataset.train_size=null", "dataset.test_size=null")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        arrays = load(cfg)
    assert 120 < arrays.train_x[0].mean() < 135, arrays.train_x[0].mean()  # a gradient's middle grey, not white
    assert "Palette images with Transparency" not in caplog.text  # through RGBA, as Pillow advises
    assert "use at most 12 bits" not in caplog.text  # a full 16-bit gradient


def test_12_bit_data_in_16_bit_images_is_warned_about(cfg_for, tmp_path: Path, caplog) -> None:
    # A 12-bit sensor's values (0-4,095) in 16-bit PNGs: scaled as 16-bit they decode to 0-15 of 255, and
    # trained silently on near-black images.
    root = _image_folder(tmp_path / "imgs")
    twelve_bit = np.linspace(0, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(twelve_bit).save(root / "train" / "cats" / "0.png")
    cfg = cfg_for("dataset=imagefolder", f"dataset.root={root}", f"data_dir={tmp_path / 'data'}",
                  "dataset.train_size=null", "dataset.test_size=null")  # fmt: skip
    with caplog.at_level(logging.INFO):
        arrays = load(cfg)
    assert arrays.train_x[0].max() <= 15 and "Decoding" in caplog.text
    assert "1 16-bit image uses at most 12 bits (values under 4096), e.g. " in caplog.text
    assert "cats/0.png: scaled as 16-bit, such images are nearly black" in caplog.text
    # Recorded too: a run's notes, and the reports', said why it trained on black images.
    assert [n for n in arrays.notes if "at most 12 bits" in n] == [caplog.records[-1].getMessage()]
    # Every load says it, from the cache too (each job of a sweep trains on the same dark images).
    caplog.clear()
    with caplog.at_level(logging.INFO):
        load(cfg)
    assert "Decoding" not in caplog.text and "1 16-bit image uses at most 12 bits" in caplog.text
    from bench import train

    run = train.run(
        cfg_for(
            "dataset=imagefolder",
            f"dataset.root={root}",
            f"data_dir={tmp_path / 'data'}",
            "dataset.train_size=null",
            "dataset.test_size=null",
            "batch_size=2",
        ),
        tmp_path / "run",
    )
    assert any("at most 12 bits" in n for n in run.notes), run.notes  # fmt: skip
    # A 32-bit "I" image (a TIFF, say) with 12-bit values is scaled the same way, and said too.
    Image.fromarray(twelve_bit.astype(np.int32), "I").save(root / "train" / "cats" / "0.tiff")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load(cfg)
    assert "2 16-bit images use at most 12 bits" in caplog.text


# ------------------------------------------------------------------------------------------- loaders


def test_dataloader_applies_the_labs_transform(cfg_for) -> None:
    cfg = cfg_for("dataset.train_size=64", "batch_size=16")
    arrays = load(cfg)
    source = train_loader(cfg, arrays, shuffle=False)
    x, y = next(iter(source.batches()))
    expected = (torch.from_numpy(arrays.train_x[:16]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, expected, atol=1e-6)
    assert torch.equal(y, torch.from_numpy(arrays.train_y[:16]))
    assert len(source) == 4


def test_shuffle_depends_on_the_epoch_seed_only(cfg_for) -> None:
    cfg = cfg_for("dataset.train_size=64", "batch_size=64")
    arrays = load(cfg)
    source = train_loader(cfg, arrays, shuffle=True)
    first = [next(iter(source.batches(epoch_seed(0, e))))[1] for e in (1, 2, 1)]
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])
    assert sorted(first[0].tolist()) == sorted(arrays.train_y.tolist())


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_workers_beyond_the_usable_cores_are_one_note_not_torchs_warnings(tmp_path: Path) -> None:
    # A SLURM job (or a container) may use fewer cores than the node has: the note judged workers by the
    # node's count and said nothing, while torch printed its paragraph-long warning, with file and line, twice.
    core = min(os.sched_getaffinity(0))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *(t for t in TINY if not t.startswith("workers=")), "workers=2"], cwd=tmp_path,
        env=offline_env(), capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    note = "workers=2 is more than the 1 CPU core this run may use"
    assert f"Note: {note}" in proc.stdout + proc.stderr
    assert "UserWarning" not in proc.stdout + proc.stderr
    metrics = read_metrics(only_run_dir(tmp_path))
    assert any(n.startswith(note) for n in metrics["notes"])
    if (os.cpu_count() or 1) > 1:
        assert metrics["env"]["cpu"].endswith(f"({os.cpu_count()} logical cores, 1 usable here)")

"""Fast checks behind the README's reliability table: divergence, bad data, loading checkpoints."""

from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from _data_cases import BAD_FOLDERS, bad_folder, image
from PIL import Image

from hetero.data import check_data, dataset_shape, load_dataset
from hetero.errors import TrainingDiverged
from hetero.models import create_model
from hetero.protocol import TrainProtocol
from hetero.train import Trainer


# ---- divergence -----------------------------------------------------------------------------
def test_a_nan_loss_stops_training_naming_the_epoch_and_the_learning_rate():
    data = load_dataset("digits", fraction=0.1, seed=0)
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, input_size=8, in_channels=1)
    epochs = []
    trainer = Trainer(model, data, TrainProtocol(epochs=3, batch_size=32, lr=1e6, device="cpu"))
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(on_epoch=lambda metrics, _: epochs.append(metrics["epoch"]))
    assert "diverged in epoch 1" in str(info.value) and "learning rate" in str(info.value)
    assert epochs == [] and trainer.history == []   # nothing reported as a result


def test_hetero_run_exits_1_on_divergence_and_writes_no_result(tmp_path, capsys):
    from hetero_cli import main

    out = tmp_path / "run"
    code = main(["run", "--baseline", "--width-mult", "0.5", "--lr", "1e6", "--epochs", "2",
                 "--data-fraction", "0.1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "diverged in epoch" in err and len(err.splitlines()) == 1
    assert not (out / "result.json").exists() and not (out / "lwdna.json").exists()


# ---- checkpoints ------------------------------------------------------------------------------
def test_run_resume_refuses_a_checkpoint_that_is_not_plain_data(tmp_path, capsys):
    """A planted pickle must not run code: torch.load(weights_only=True) refuses it."""
    from hetero_cli import main

    torch.save({"payload": PurePosixPath("any object")}, tmp_path / "checkpoint.pt")
    code = main(["run", "--resume", "--out", str(tmp_path), "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not a hetero checkpoint" in err and "drop --resume" in err
    assert len(err.splitlines()) == 1


# ---- data -----------------------------------------------------------------------------------
def write_folder(root: Path, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(folder / f"{i}.jpg")
    return root


# Both in-memory folder loaders: computed statistics (imagefolder) and the reference's fixed
# ones (a CIFAR image folder).
@pytest.mark.parametrize("name, size", [("imagefolder", 8), ("cifar10", 32)])
def test_unreadable_images_are_skipped_with_one_warning_naming_them(tmp_path, monkeypatch,
                                                                    name, size):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "pets", size)
    (root / "train" / "cat" / "0.jpg").write_bytes(b"not a jpeg")          # unidentifiable
    whole = (root / "train" / "dog" / "2.jpg").read_bytes()
    (root / "train" / "dog" / "2.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    if name == "imagefolder":
        assert dataset_shape(name, root) == (3, 8, 2)  # the first readable image decides
    for _ in range(2):   # decoded, then from the cache: the same warning both times
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_dataset(name, root)
        messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
        assert len(messages) == 1, messages
        assert "skipped 2 unreadable image(s)" in messages[0]
        assert "train/cat/0.jpg" in messages[0] and "train/dog/2.jpg" in messages[0]
        assert (data.num_train, data.num_test) == (4, 4)
        assert data.train_y.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("name, data_dir, needle", [
    ("cifar10", "missing", "data_dir missing does not exist"),
    ("cifar10", "empty", "cifar10 not found"),
    ("imagefolder", None, "needs data_dir"),
    ("imagefolder", "empty", "needs a train/ and a test/"),
])
def test_check_data_refuses_missing_data_in_one_line(tmp_path, monkeypatch, name, data_dir,
                                                     needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises((FileNotFoundError, ValueError)) as info:
        check_data(name, data_dir)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_check_data_accepts_good_folders(tmp_path):
    check_data("digits")
    check_data("imagefolder", write_folder(tmp_path / "pets"))
    check_data("cifar10", tmp_path / "nowhere_yet", download=True)  # torchvision makes it


# The class of folders a user brings by mistake (tests/_data_cases.py): each decided from the
# whole folder, before a sweep starts (check_data), and the same when a trial loads it.
@pytest.mark.parametrize("case, needle", BAD_FOLDERS, ids=[c for c, _ in BAD_FOLDERS])
def test_a_bad_image_folder_is_refused_in_one_line_before_and_at_load(tmp_path, monkeypatch,
                                                                      case, needle):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))
    root = bad_folder(tmp_path / "pets", case)
    for check in (lambda: check_data("imagefolder", root),
                  lambda: load_dataset("imagefolder", root)):
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            check()
        assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("first", ["L", "RGB"])
def test_channels_come_from_every_image_not_the_first(tmp_path, monkeypatch, first):
    """An RGB folder whose first image is grayscale stays RGB; an all-grayscale one is 1
    channel."""
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))
    root = bad_folder(tmp_path / "pets", "good")
    for path in sorted(root.rglob("*.png")):
        image(path, mode="L")
    image(root / "train" / "cat" / "0.png", mode=first)   # the first image of the folder
    channels = 1 if first == "L" else 3
    assert dataset_shape("imagefolder", root) == (channels, 8, 2)
    assert load_dataset("imagefolder", root).in_channels == channels


def test_a_cifar_folder_with_one_image_of_another_size_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HETERO_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cifar"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            image(root / split / name / "0.png", size=(32, 32))
    image(root / "test" / "dog" / "1.png", size=(28, 28))   # not the first one
    with pytest.raises(ValueError, match=r"cifar10 images are 32x32, but 1 in .* are not "
                                         r"\(.*1.png is 28x28\)"):
        check_data("cifar10", root)


# ---- tracking ---------------------------------------------------------------------------------
def test_trials_logging_one_dataset_at_once_each_get_it_once(tmp_path):
    """MLflow looks a dataset up, then inserts it: trials starting together used to fail on
    the unique key (`UNIQUE constraint failed: datasets`). Four threads log one new dataset at
    the same instant, fifteen times, into a real SQLite store."""
    import threading

    from mlflow import MlflowClient

    from sweeps.inputs import log_dataset

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    data = load_dataset("digits", fraction=0.1)
    errors: list[str] = []
    for round_ in range(15):
        experiment = client.create_experiment(f"e{round_}")   # the dataset is new each round
        runs = [client.create_run(experiment).info.run_id for _ in range(4)]
        start = threading.Barrier(len(runs))

        def log(run_id: str, start: threading.Barrier = start) -> None:
            own = MlflowClient(uri)
            start.wait()
            try:
                log_dataset(own, run_id, data, name="digits", data_dir=None, fraction=0.1)
            except Exception as exc:  # noqa: BLE001 (any failure is what the test counts)
                errors.append(str(exc)[:200])

        threads = [threading.Thread(target=log, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for run in runs:
            assert len(client.get_run(run).inputs.dataset_inputs) == 1
    assert errors == []


# ---- exposure ---------------------------------------------------------------------------------
def test_the_ray_token_file_is_made_private(tmp_path, monkeypatch, capsys):
    """`ray get-auth-token --generate` writes it with the umask's 0644: any user could read it."""
    from sweeps.runner import private_token_file

    token = tmp_path / "auth_token"
    token.write_text("secret\n")
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert private_token_file() == token
    assert token.stat().st_mode & 0o777 == 0o600
    assert "was readable by other users (mode 644); made it 0600" in capsys.readouterr().err
    private_token_file()   # already private: nothing said
    assert capsys.readouterr().err == ""

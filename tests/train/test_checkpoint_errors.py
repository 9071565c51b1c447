"""A checkpoint that cannot be read: ValueError naming it (train.load_classifier), one
line and exit 2 (python -m train.evaluate), not a traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "train", "assets", "cifar10_compact_fast")
BROKEN = ("truncated", "bad_meta", "bad_metrics", "not_a_checkpoint")


def broken_checkpoint(root, how: str) -> str:
    """A copy of a shipped classifier under `root`, broken `how` (one of BROKEN)."""
    ckpt = shutil.copytree(SHIPPED, os.path.join(root, how))
    steps = os.path.join(ckpt, "checkpoints")
    step = os.path.join(steps, os.listdir(steps)[0])
    if how == "truncated":  # the array data files cut short, as by a full disk
        for folder, _, files in os.walk(os.path.join(step, "model")):
            for name in files if os.path.basename(folder) == "d" else ():
                with open(os.path.join(folder, name), "r+b") as f:
                    f.truncate(10)
    elif how == "bad_meta":
        with open(os.path.join(step, "meta", "metadata"), "w") as f:
            f.write("garbage")
    elif how == "bad_metrics":
        with open(os.path.join(step, "metrics", "metrics"), "w") as f:
            f.write("garbage")
    elif how == "not_a_checkpoint":  # a checkpoints/ folder holding something else
        shutil.rmtree(steps)
        os.makedirs(os.path.join(steps, "7"))
        with open(os.path.join(steps, "7", "notes.txt"), "w") as f:
            f.write("hello")
    else:
        raise ValueError(how)
    return ckpt


@pytest.mark.parametrize("how", BROKEN)
def test_load_classifier_names_the_unreadable_checkpoint(tmp_path, how):
    ckpt = broken_checkpoint(str(tmp_path), how)
    with pytest.raises(ValueError, match=f"workdir '{ckpt}': the checkpoint.* cannot be read"):
        train.load_classifier(ckpt)


def test_no_checkpoint_is_still_file_not_found(tmp_path):
    os.makedirs(tmp_path / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train.load_classifier(str(tmp_path))


def test_evaluate_prints_one_line(tmp_path):
    ckpt = broken_checkpoint(str(tmp_path), "truncated")
    out = subprocess.run([sys.executable, "-m", "train.evaluate", ckpt], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 2
    lines = [s for s in out.stderr.splitlines() if not s.startswith("WARNING:absl")]
    assert len(lines) == 1 and lines[0].startswith(f"error: workdir '{ckpt}'"), out.stderr
    assert "OUT_OF_RANGE" in lines[0]


# A checkpoint whose weights changed on disk after saving (issue 22 item 3).

ASSETS = os.path.join(ROOT, "train", "assets")


def _largest_data_file(ckpt: str) -> str:
    files = [os.path.join(folder, name) for folder, _, names in os.walk(ckpt) for name in names]
    return max(files, key=os.path.getsize)


def test_a_bit_flip_in_the_weights_is_refused_naming_workdir_and_step(tmp_path):
    ckpt = shutil.copytree(SHIPPED, str(tmp_path / "flipped"))
    # Found by trial: this bit of the compressed data changes one weight and orbax reads
    # the file without complaint (other offsets give NaN weights, equally silently).
    path = _largest_data_file(ckpt)
    data = bytearray(open(path, "rb").read())
    data[700000] ^= 0x40
    open(path, "wb").write(bytes(data))
    step = os.listdir(os.path.join(ckpt, "checkpoints"))[0]
    message = f"workdir '{ckpt}': the checkpoint at step {step} holds other weights"
    with pytest.raises(ValueError, match=message):
        train.load_classifier(ckpt)


@pytest.mark.parametrize("asset", sorted(n for n in os.listdir(ASSETS) if not n.endswith(".npz")))
def test_every_shipped_classifier_carries_the_digest_of_its_weights(asset):
    from train import checkpoint

    workdir = os.path.join(ASSETS, asset)
    mngr = checkpoint.manager(workdir, read_only=True)
    step = mngr.best_step() or mngr.latest_step()
    digest = checkpoint.read_meta(mngr, step).get("digest")
    assert digest and digest.startswith("sha256:")
    _, variables, _ = train.load_parts(workdir)  # checks it
    assert checkpoint.variables_digest(variables) == digest


def test_a_checkpoint_saved_before_digests_loads_unchecked(tmp_path):
    ckpt = shutil.copytree(SHIPPED, str(tmp_path / "old"))
    steps = os.path.join(ckpt, "checkpoints")
    meta_path = os.path.join(steps, os.listdir(steps)[0], "meta", "metadata")
    meta = json.load(open(meta_path))
    del meta["digest"]
    open(meta_path, "w").write(json.dumps(meta))
    _, info = train.load_classifier(ckpt)
    assert info["model"] == "compact_fast"

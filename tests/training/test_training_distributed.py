"""``torchrun --nproc_per_node=2`` (gloo, CPU) repeats a single-process run.

Why they can match: each of the 2 processes takes an interleaved half of every global
batch and DDP averages the gradients; a single process with ``accumulation_steps=2``
runs the same two halves one after the other (BatchNorm normalises each half by its own
statistics in both cases) and sums the same scaled gradients. What differs is the order
of floating-point sums (all-reduce vs accumulation) and thread counts, so weights agree
to float32 rounding amplified by a few Adam steps, not bit for bit; BatchNorm's running
statistics are not compared (DDP keeps rank 0's, accumulation sees both halves).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rcm_viewer.synthetic import write_dataset
from rcm_viewer.training import TrainingConfig, train
from rcm_viewer.training.trainer import CHECKPOINT_NAME

ARGS = dict(
    architecture="resnet18",
    tile_px=64,
    pixel_size_um=2.0,
    epochs=1,
    crops_per_mosaic=4,
    batch_size=8,
    seed=5,
    workers=0,
    patience=10,
    split="50/25/25",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_process_gloo_matches_single_process(tmp_path: Path):
    data = tmp_path / "data"
    write_dataset(data, per_class=4, width=256, height=256, seed=9)
    torch.set_num_threads(2)
    single = train(
        TrainingConfig(data_dir=data, out_dir=tmp_path / "single", accumulation_steps=2, **ARGS),
        progress=None,
    )

    env = {**os.environ, "RCM_VIEWER_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "rcm_viewer",
        "train",
        str(data),
        "--out",
        str(tmp_path / "ddp"),
        "--arch",
        "resnet18",
        "--tile-px",
        "64",
        "--pixel-size-um",
        "2.0",
        "--epochs",
        "1",
        "--crops-per-mosaic",
        "4",
        "--batch-size",
        "8",
        "--seed",
        "5",
        "--workers",
        "0",
        "--patience",
        "10",
        "--split",
        "50/25/25",
        "--device",
        "cpu",
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=800)
    assert run.returncode == 0, run.stderr[-3000:]

    a = torch.load(single.work_dir / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(tmp_path / "ddp.training" / CHECKPOINT_NAME, weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    import json

    loss_a = [h["train_loss"] for h in json.loads(a["history_json"])]
    loss_b = [h["train_loss"] for h in json.loads(b["history_json"])]
    assert loss_b == pytest.approx(loss_a, rel=1e-4)
    worst = 0.0
    for key, value in a["model"].items():
        if "running_" in key or "num_batches" in key:
            continue
        worst = max(worst, float((value - b["model"][key]).abs().max()))
    # lr 1e-3, Adam moves a weight at most ~lr per step: differences well below one step
    assert worst < 1e-4, worst

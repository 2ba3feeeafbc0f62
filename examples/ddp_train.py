"""PyTorch DistributedDataParallel training that survives failures, with phalanx.train.

A small MLP learns a fixed random linear map from generated data. Every worker reads the wiring
phalanx sets (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK; CUDA_VISIBLE_DEVICES) and uses gloo on
CPU, or nccl when it has a GPU. Rank 0 writes a checkpoint every CHECKPOINT_EVERY steps into
PHALANX_CHECKPOINT_DIR (model, optimizer, step) and reports it; on SIGTERM (cancel, preemption)
it saves at once and exits. After a failure phalanx restarts the whole gang, which resumes
from the last checkpoint: the batch of step s is generated from s alone, so an interrupted
run ends with the same parameters as an uninterrupted one (bitwise on CPU).

    python examples/ddp_train.py            # env: STEPS, CHECKPOINT_EVERY, STEP_SLEEP_S
At the end rank 0 writes final.pt (the parameters) to the checkpoint dir.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from phalanx import train

BATCH = 32
FEATURES = 16


def batch_for(step: int, rank: int, world: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The data of ``step`` for ``rank``: a function of (step, rank) only, so a resumed run
    sees exactly the data the uninterrupted run saw."""
    g = torch.Generator().manual_seed(1_000_003 * step + rank)
    x = torch.randn(BATCH // world, FEATURES, generator=g)
    w = torch.linspace(-1, 1, FEATURES).unsqueeze(1)
    y = x @ w + 0.01 * torch.randn(BATCH // world, 1, generator=g)
    return x.to(device), y.to(device)


def main() -> int:
    steps = int(os.environ.get("STEPS", "60"))
    every = int(os.environ.get("CHECKPOINT_EVERY", "10"))
    sleep_s = float(os.environ.get("STEP_SLEEP_S", "0"))
    run = train.init()
    use_cuda = torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") != ""
    device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = 0
    last = run.last_checkpoint
    if last is not None:
        state = torch.load(run.checkpoint_dir / last.path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"]) + 1
        print(f"rank {rank}: resuming from step {last.step} ({last.path})", flush=True)
    ddp = DistributedDataParallel(model)

    def save(step: int) -> None:
        if rank != 0:
            return
        name = f"ckpt-{step}.pt"
        tmp = run.checkpoint_dir / f".{name}.tmp"
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp
        )
        os.replace(tmp, run.checkpoint_dir / name)
        run.report_checkpoint(step, name)

    for step in range(start, steps):
        x, y = batch_for(step, rank, world, device)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(ddp(x), y)
        loss.backward()
        optimizer.step()
        run.report_progress(step, total_steps=steps)
        if (step + 1) % every == 0 or run.should_save:
            save(step)
        if run.should_stop:
            print(f"rank {rank}: asked to stop at step {step}; checkpoint saved", flush=True)
            return 143
        if sleep_s:
            time.sleep(sleep_s)

    if rank == 0:
        params = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(params, run.checkpoint_dir / "final.pt")
        digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in params.values()))
        print(f"rank 0: done, {steps} steps, loss {loss.item():.6f}, params sha256 {digest.hexdigest()[:16]}", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

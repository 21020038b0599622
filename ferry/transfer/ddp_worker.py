"""The torchrun worker entry (``python -m ferry.transfer.ddp_worker SPEC``): one process of
a distributed fine-tune. It lives apart from the launcher (``distributed``) because it runs
the training, which itself may launch torchrun: the two import each other otherwise.

Every rank reads the same spec and joins the process group; rank 0 alone appends each
epoch's record to the file the launching task forwards to MLflow and the logs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from ferry.config import FerryConfig
from ferry.models.sources import PretrainedSource


def _appender(path: Path) -> Callable[[int, dict], None]:
    """Rank 0's epoch callback: one JSON line per epoch, flushed at once."""
    def append(epoch: int, record: dict) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: float(v) for k, v in record.items()}) + "\n")
    return append


def main(argv: list[str]) -> None:
    """A torchrun worker: join the process group, train, leave."""
    import torch
    import torch.distributed as dist

    from ferry.env import apply_offline_defaults
    from ferry.transfer import parallel, training

    apply_offline_defaults()
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.chdir(spec["cwd"])
    cfg = FerryConfig.model_validate(yaml.safe_load(spec["config"]))
    gpu = torch.cuda.is_available() and cfg.train.device != "cpu"
    backend = cfg.distributed.backend if cfg.distributed.backend != "auto" else (
        "nccl" if gpu else "gloo")
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    dist.init_process_group(backend)
    try:
        main_rank = parallel.current().main
        training.train(cfg, PretrainedSource(**spec["source"]), Path(spec["split_dir"]),
                       spec["split_key"],
                       Path(spec["features_file"]) if spec["features_file"] else None,
                       spec["role"], _appender(Path(spec["epochs"])) if main_rank else None)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])

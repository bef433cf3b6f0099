"""Build and run an mmengine ``Runner`` from one of this project's Python configs.

Device policy, decided here so configs stay portable: on CUDA the optimiser wrapper becomes
``AmpOptimWrapper(dtype='bfloat16')`` (bf16 autocast; mmengine's AMP wrapper refuses the CPU);
on the CPU it stays a plain fp32 ``OptimWrapper`` and ``torch.compile`` is switched off.

Distributed training goes through mmengine's launchers::

    torchrun --nproc_per_node 4 -m ultrasam.cli train CONFIG --launcher pytorch
    srun -p PART --gres gpu:4 --ntasks 4 --ntasks-per-node 4 ultrasam train CONFIG --launcher slurm

``batch_size`` in a config is per GPU; the sample stream is split across ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ultrasam.atomic import atomic_write
from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def register_all() -> None:
    """Import every module that registers classes in mmengine's registries."""
    import ultrasam_training.train.dataset  # noqa: F401
    import ultrasam_training.train.hooks  # noqa: F401
    import ultrasam_training.train.model  # noqa: F401
    import ultrasam_training.train.sampler  # noqa: F401


def find_config(name: str | Path) -> Path:
    """A config path, or the name of a packaged config (``ultrasam_lite`` or ``ultrasam_lite.py``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    packaged = CONFIG_DIR / (path.name if path.suffix == ".py" else f"{path.name}.py")
    if packaged.is_file():
        return packaged
    available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_")))
    raise TrainingError(f"config {name} not found (packaged configs: {available})")


def load_config(name: str | Path, cfg_options: dict | None = None):
    """The mmengine ``Config`` of ``name`` with ``--cfg-options`` style overrides merged in."""
    from mmengine.config import Config

    config = Config.fromfile(str(find_config(name)))
    if cfg_options:
        config.merge_from_dict(cfg_options)
    return config


def apply_device_policy(config) -> None:
    """bf16 AMP on CUDA, fp32 on the CPU; compile only where it helps (CUDA)."""
    cuda = torch.cuda.is_available()
    amp = config.get("amp", "auto")
    wrapper = config.optim_wrapper
    if cuda and amp in ("auto", True, "bfloat16"):
        wrapper["type"] = "AmpOptimWrapper"
        wrapper["dtype"] = "bfloat16"
    else:
        if amp is True and not cuda:
            log.warning("amp=True ignored: no CUDA device, training in fp32")
        wrapper["type"] = "OptimWrapper"
        wrapper.pop("dtype", None)
    if not cuda and config.get("env_cfg", {}).get("dist_cfg", {}).get("backend") == "nccl":
        config.env_cfg.dist_cfg.backend = "gloo"  # CPU processes talk over gloo
    if not cuda and config.get("compile", False):
        log.warning("torch.compile is off on the CPU")
        config.compile = False


def _init_cpu_distributed(config, launcher: str) -> None:
    """CPU data parallelism (gloo) under torchrun: mmengine's launchers assume CUDA devices."""
    import torch.distributed as dist

    if launcher != "pytorch":
        raise TrainingError(f"--launcher {launcher} needs CUDA devices; on CPUs use torchrun with --launcher pytorch")
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = config.get("model_wrapper_cfg") or dict(type="MMDistributedDataParallel")
    wrapper["device_ids"] = None  # a CPU module takes no device ids
    config.model_wrapper_cfg = wrapper


@contextlib.contextmanager
def _own_checkpoints_loadable() -> Iterator[None]:
    """Let mmengine's ``torch.load`` read the full checkpoints *this run wrote* (optimizer, message hub).

    torch >= 2.6 loads ``weights_only`` by default, which refuses mmengine's containers; the
    override applies only while resuming from the work dir, never to weights from elsewhere.
    """
    previous = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = previous


def _record_run(runner, config_path: Path, resume: bool) -> None:
    """Append this run's seed, command and environment to ``<work_dir>/run_info.json``."""
    from mmengine.dist import is_main_process

    if not is_main_process():
        return
    path = Path(runner.work_dir) / "run_info.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append({
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
        "config": str(config_path),
        "resume": resume,
        "seed": runner.seed,
        "randomness": dict(runner.cfg.get("randomness", {})),
        "world_size": runner.world_size,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    })
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(history, indent=1)), overwrite=True)


def build_runner(
    config: str | Path,
    work_dir: str | Path | None = None,
    cfg_options: dict | None = None,
    resume: bool = False,
    launcher: str = "none",
):
    """An mmengine ``Runner`` for ``config``; ``work_dir`` defaults to ``work_dirs/<config name>``."""
    from mmengine.runner import Runner

    if launcher not in LAUNCHERS:
        raise TrainingError(f"launcher must be one of {LAUNCHERS}, not {launcher!r}")
    register_all()
    config_path = find_config(config)
    cfg = load_config(config_path, cfg_options)
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or Path("work_dirs") / config_path.stem)
    cfg.launcher = launcher
    if resume:
        cfg.resume = True
        cfg.load_from = None  # resume from the latest checkpoint of work_dir, never from init weights
    apply_device_policy(cfg)
    if launcher != "none" and not torch.cuda.is_available():
        _init_cpu_distributed(cfg, launcher)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    runner = Runner.from_cfg(cfg)
    runner._ultrasam_config_path = config_path
    return runner


def train(
    config: str | Path,
    work_dir: str | Path | None = None,
    cfg_options: dict | None = None,
    resume: bool = False,
    launcher: str = "none",
) -> Path:
    """Train; returns the work dir (holding checkpoints, ``model_final.pth``, logs and curves)."""
    runner = build_runner(config, work_dir, cfg_options, resume, launcher)
    if resume and not (Path(runner.work_dir) / "last_checkpoint").exists():
        raise TrainingError(f"--resume: no checkpoint to resume from in {runner.work_dir}")
    _record_run(runner, runner._ultrasam_config_path, resume)
    with _own_checkpoints_loadable() if resume else contextlib.nullcontext():
        runner.train()
    return Path(runner.work_dir)


def parse_cfg_options(items: Sequence[str] | None) -> dict:
    """``["a.b=1", "c=[1,2]"]`` → ``{"a.b": 1, "c": [1, 2]}`` with mmengine's own value parsing."""
    from mmengine.config import DictAction

    if not items:
        return {}
    options: dict = {}
    for item in items:
        if "=" not in item:
            raise TrainingError(f"--cfg-options expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        options[key] = DictAction._parse_iterable(value)
    return options

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

import itertools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from ultrasam.atomic import atomic_write
from ultrasam_training.train.errors import TrainingError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
_RUNNERS_BUILT = itertools.count()  # makes each runner's experiment name unique in a process


def register_all() -> None:
    """Import every module that registers classes in mmengine's registries."""
    import ultrasam_training.train.dataset  # noqa: F401
    import ultrasam_training.train.hooks  # noqa: F401
    import ultrasam_training.train.model  # noqa: F401
    import ultrasam_training.train.plain_checkpoint  # noqa: F401
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


def resume_checkpoint(work_dir: str | Path) -> Path:
    """The checkpoint ``<work_dir>/last_checkpoint`` names, refused unless it is a file inside ``work_dir``.

    The pointer is plain text anyone can edit; following it outside the run's own folder would
    let resuming read a file the run never wrote.
    """
    work_dir = Path(work_dir).resolve()
    pointer = work_dir / "last_checkpoint"
    if not pointer.is_file():
        raise TrainingError(f"--resume: no checkpoint to resume from in {work_dir} (no last_checkpoint file)")
    text = pointer.read_text(errors="replace").strip()
    target = Path(text).expanduser()
    target = (target if target.is_absolute() else work_dir / target).resolve()
    if not target.is_relative_to(work_dir):
        raise TrainingError(f"--resume: {pointer} points outside the work dir ({text[:200]}): refused")
    if not target.is_file():
        raise TrainingError(f"--resume: the checkpoint {pointer} names does not exist: {target}")
    return target


def _runner_class():
    """mmengine's ``Runner`` with checkpoint reading that never executes pickled code."""
    from mmengine.model import is_model_wrapper
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import _load_checkpoint_to_model

    from ultrasam.checkpoints import read_checkpoint
    from ultrasam.errors import CheckpointError
    from ultrasam_training.train.plain_checkpoint import decode

    class UltraSamRunner(Runner):
        def resume(self, filename, *args, **kwargs):
            """mmengine's resume, with missing or malformed state (meta, message hub) named, not a traceback."""
            try:
                return super().resume(filename, *args, **kwargs)
            except (KeyError, AssertionError, TypeError, ValueError, AttributeError) as exc:
                raise TrainingError(
                    f"resume: checkpoint {filename} lacks or has malformed training state ({type(exc).__name__}: {exc})"
                ) from exc

        def load_checkpoint(self, filename, map_location="cpu", strict=False, revise_keys=[(r"^module.", "")]):
            """``load_from`` weights and resumed checkpoints, read by the restricted reader.

            Resuming refuses anything but plain data (what :class:`PlainCheckpointHook` writes)
            and any file outside the work dir.
            """
            resuming = bool(self._resume)
            path = Path(str(filename)).expanduser()
            if resuming and not path.resolve().is_relative_to(Path(self.work_dir).resolve()):
                raise TrainingError(f"resume: checkpoint {filename} is outside the work dir {self.work_dir}: refused")
            try:
                checkpoint = read_checkpoint(path, allow_stubs=not resuming)
            except CheckpointError as exc:
                what = "resume from" if resuming else "load_from"
                hint = (
                    (
                        " (checkpoints written before this version hold mmengine objects and cannot be resumed "
                        "safely; start a new run with load_from= pointing at it)"
                    )
                    if resuming
                    else ""
                )
                raise TrainingError(f"{what}: {exc}{hint}") from exc
            if not isinstance(checkpoint, dict):
                raise TrainingError(f"{filename} is not a checkpoint container ({type(checkpoint).__name__})")
            try:
                checkpoint = decode(checkpoint)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise TrainingError(f"checkpoint {filename} has malformed training state ({exc})") from exc
            self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
            model = self.model.module if is_model_wrapper(self.model) else self.model
            try:
                checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
            except (RuntimeError, KeyError, TypeError) as exc:
                raise TrainingError(f"checkpoint {filename} does not fit the model ({str(exc)[:300]})") from exc
            self._has_loaded = True
            self.logger.info(f"Load checkpoint from {filename}")
            return checkpoint

    return UltraSamRunner


def _ensure_plain_checkpoints(cfg) -> None:
    """Every run saves checkpoints as plain data (see :mod:`plain_checkpoint`)."""
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == "PlainCheckpointHook" for h in hooks):
        hooks.append(dict(type="PlainCheckpointHook"))
    cfg.custom_hooks = hooks


def _record_run(runner, config_path: Path, resume: bool) -> None:
    """Append this run's seed, command and environment to ``<work_dir>/run_info.json``."""
    from mmengine.dist import is_main_process

    if not is_main_process():
        return
    path = Path(runner.work_dir) / "run_info.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(
        {
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
        }
    )
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(history, indent=1)), overwrite=True)


def build_runner(
    config: str | Path,
    work_dir: str | Path | None = None,
    cfg_options: dict | None = None,
    resume: bool = False,
    launcher: str = "none",
):
    """An mmengine ``Runner`` for ``config``; ``work_dir`` defaults to ``work_dirs/<config name>``."""
    if launcher not in LAUNCHERS:
        raise TrainingError(f"launcher must be one of {LAUNCHERS}, not {launcher!r}")
    register_all()
    config_path = find_config(config)
    cfg = load_config(config_path, cfg_options)
    cfg.work_dir = str(work_dir or cfg.get("work_dir") or Path("work_dirs") / config_path.stem)
    cfg.launcher = launcher
    if resume:  # from the checkpoint last_checkpoint names, confined to the work dir; never init weights
        cfg.resume = True
        cfg.load_from = str(resume_checkpoint(cfg.work_dir))
    _ensure_plain_checkpoints(cfg)
    apply_device_policy(cfg)
    if launcher != "none" and not torch.cuda.is_available():
        _init_cpu_distributed(cfg, launcher)
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    if not cfg.get("experiment_name"):
        # mmengine names its logger and visualizer ``<config>_<timestamp to the second>`` and returns an
        # existing instance of that name, handlers and all: two runners started in one second in a process
        # (tests, a sweep) would share one, logging to the first run's (possibly closed) streams and files.
        cfg.experiment_name = f"{config_path.stem}_{os.getpid()}_{next(_RUNNERS_BUILT)}"
    runner = _runner_class().from_cfg(cfg)
    runner._ultrasam_config_path = config_path
    return runner


def train(
    config: str | Path,
    work_dir: str | Path | None = None,
    cfg_options: dict | None = None,
    resume: bool = False,
    launcher: str = "none",
) -> Path:
    """Train; returns the work dir (holding checkpoints, ``model_final.safetensors``, logs and curves)."""
    runner = build_runner(config, work_dir, cfg_options, resume, launcher)
    _record_run(runner, runner._ultrasam_config_path, resume)
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

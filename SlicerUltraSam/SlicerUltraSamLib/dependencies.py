"""Install the module's Python dependencies into Slicer — only after the user agrees.

Slicer ships numpy, SimpleITK, vtk and requests; replacing any of them from PyPI breaks Slicer, so
every install runs under a pip constraints file that pins the versions Slicer has. Torch comes
through the PyTorch extension (``PyTorchUtils``, which picks the build for the GPU driver) when it
is installed, otherwise from PyPI. Nothing is installed at import time or without consent; the
checks use package metadata and import specs, never importing torch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Callable

log = logging.getLogger("SlicerUltraSam")

__all__ = [
    "REQUIREMENTS_FILE",
    "PROTECTED_PACKAGES",
    "read_requirements",
    "missing_requirements",
    "protected_constraints",
    "pip_arguments",
    "install_dependencies",
]

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
PROTECTED_PACKAGES = ("numpy", "SimpleITK", "vtk", "requests")
TORCH_PACKAGES = ("torch", "torchvision")
# Distribution name → module name, where they differ.
IMPORT_NAMES = {"segment-anything": "segment_anything", "opencv-python-headless": "cv2", "opencv-python": "cv2"}


def _project(requirement: str) -> str:
    """``"opencv-python-headless>=4.8"`` → ``"opencv-python-headless"``."""
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]


def read_requirements(path: str | Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of a requirements file (comments and blanks dropped)."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def missing_requirements(
    requirements: list[str] | None = None,
    find_spec: Callable[[str], object] = importlib.util.find_spec,
) -> list[str]:
    """The requirements (torch included) whose module cannot be found; imports nothing."""
    requirements = list(TORCH_PACKAGES) + (read_requirements() if requirements is None else list(requirements))
    missing = []
    for requirement in requirements:
        project = _project(requirement)
        module = IMPORT_NAMES.get(project.lower(), project.replace("-", "_"))
        if find_spec(module) is None:
            missing.append(requirement)
    return missing


def protected_constraints() -> str:
    """pip constraints pinning the installed version of every package Slicer ships."""
    lines = []
    for name in PROTECTED_PACKAGES:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + ("\n" if lines else "")


def pip_arguments(requirements: list[str], constraints_path: str | Path) -> str:
    """The argument string for ``slicer.util.pip_install``: the requirements under the constraints.

    Protected packages are never requested themselves, even if a requirements file names them.
    """
    protected = {p.lower() for p in PROTECTED_PACKAGES}
    wanted = [r for r in requirements if _project(r).lower() not in protected]
    return " ".join(["-c", shlex.quote(str(constraints_path))] + [shlex.quote(r) for r in wanted])


def _install_torch(slicer_module, confirm: Callable[[str], bool]) -> bool:
    """Torch via the PyTorch extension when present (it matches the GPU driver), else from PyPI."""
    try:
        import PyTorchUtils  # the PyTorch extension's module

        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
        if torch_logic.torchInstalled():
            return True
        return torch_logic.installTorch(askConfirmation=False) is not None
    except ImportError:
        log.info("PyTorch extension not installed; installing torch from PyPI")
    if not confirm(
        "The PyTorch extension (which picks the torch build for your GPU) is not installed.\n"
        "Install torch and torchvision from PyPI instead (several hundred MB)?"
    ):
        return False
    slicer_module.util.pip_install("torch torchvision")
    return True


def install_dependencies(confirm: Callable[[str], bool], slicer_module=None) -> bool:
    """Ask, then install what is missing; True when everything is importable afterwards.

    ``confirm(message) -> bool`` asks the user (the widget passes ``slicer.util.confirmOkCancelDisplay``).
    """
    if slicer_module is None:
        import slicer as slicer_module
    missing = missing_requirements()
    if not missing:
        return True
    message = (
        "SlicerUltraSam needs these Python packages, which are not installed:\n\n  "
        + "\n  ".join(missing)
        + "\n\nInstall them now? Slicer's own numpy, SimpleITK, vtk and requests are kept as they are."
    )
    if not confirm(message):
        return False
    if any(_project(r) in TORCH_PACKAGES for r in missing) and not _install_torch(slicer_module, confirm):
        return False
    others = [r for r in missing if _project(r) not in TORCH_PACKAGES]
    if others:
        handle, constraints = tempfile.mkstemp(prefix="ultrasam-constraints-", suffix=".txt")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(protected_constraints())
            slicer_module.util.pip_install(pip_arguments(others, constraints))
        finally:
            os.unlink(constraints)
    importlib.invalidate_caches()
    still_missing = missing_requirements()
    if still_missing:
        log.error("still missing after installation: %s", ", ".join(still_missing))
    return not still_missing

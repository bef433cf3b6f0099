"""Install the module's Python dependencies into Slicer — only after the user agrees.

Every install runs under one pip constraints file: the versions the library is tested with
(``requirements/constraints.txt``: torch and torchvision, which must move together — a bare
torchvision requirement silently upgrades torch) plus the installed versions of what Slicer ships
(numpy, SimpleITK, vtk, requests; replacing any of them from PyPI breaks Slicer). Torch comes
through the PyTorch extension (``PyTorchUtils``, which picks the build for the GPU driver) with the
tested versions as its requirement when the extension is installed, otherwise from PyPI. Nothing
is installed at import time or without consent; the checks use package metadata and import specs,
never importing torch.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("SlicerUltraSam")

__all__ = [
    "REQUIREMENTS_FILE",
    "PROTECTED_PACKAGES",
    "read_requirements",
    "missing_requirements",
    "constraints_file",
    "tested_versions",
    "protected_constraints",
    "pip_arguments",
    "install_dependencies",
]

_MODULE_DIR = Path(__file__).resolve().parents[1]
REQUIREMENTS_FILE = _MODULE_DIR / "Resources" / "requirements.txt"
# The library's pins: staged into Resources by CMake in an installed extension; in a source checkout, the file itself.
CONSTRAINTS_FILES = (
    _MODULE_DIR / "Resources" / "constraints.txt",
    _MODULE_DIR.parent / "requirements" / "constraints.txt",
)
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


def constraints_file() -> Path:
    """The library's constraints file (see ``CONSTRAINTS_FILES``); an error if the extension lacks it."""
    for path in CONSTRAINTS_FILES:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the library's pip constraints are missing (looked for {', '.join(map(str, CONSTRAINTS_FILES))})"
    )


def tested_versions(path: str | Path | None = None) -> dict[str, str]:
    """``{project: version}`` of every ``name==version`` pin in the library's constraints file."""
    pins = {}
    for line in read_requirements(path or constraints_file()):
        name, separator, version = line.partition("==")
        if separator:
            pins[name.strip()] = version.strip()
    return pins


def protected_constraints() -> str:
    """pip constraints pinning the installed version of every package Slicer ships."""
    lines = []
    for name in PROTECTED_PACKAGES:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + ("\n" if lines else "")


@contextlib.contextmanager
def _constraints() -> Iterator[Path]:
    """A temporary constraints file: the library's tested versions plus Slicer's own packages."""
    text = constraints_file().read_text(encoding="utf-8").rstrip("\n") + "\n" + protected_constraints()
    handle, name = tempfile.mkstemp(prefix="ultrasam-constraints-", suffix=".txt")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        yield Path(name)
    finally:
        os.unlink(name)


def pip_arguments(requirements: list[str], constraints_path: str | Path) -> str:
    """The argument string for ``slicer.util.pip_install``: the requirements under the constraints.

    Protected packages are never requested themselves, even if a requirements file names them.
    """
    protected = {p.lower() for p in PROTECTED_PACKAGES}
    wanted = [r for r in requirements if _project(r).lower() not in protected]
    return " ".join(["-c", shlex.quote(str(constraints_path))] + [shlex.quote(r) for r in wanted])


def _torch_requirements(install_torch: Callable, versions: dict[str, str]) -> dict[str, str]:
    """PyTorchUtils' version arguments for the tested torch (and torchvision, where its version accepts one)."""
    arguments = {"torchVersionRequirement": f"=={versions['torch']}"}
    if "torchvisionVersionRequirement" in inspect.signature(install_torch).parameters:
        arguments["torchvisionVersionRequirement"] = f"=={versions['torchvision']}"
    return arguments


def _install_torch(slicer_module, confirm: Callable[[str], bool], constraints: Path) -> bool:
    """The tested torch via the PyTorch extension when present (it matches the GPU driver), else from PyPI."""
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        log.info("PyTorch extension not installed; installing torch from PyPI")
    else:
        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
        arguments = _torch_requirements(torch_logic.installTorch, tested_versions())
        return torch_logic.installTorch(askConfirmation=False, **arguments) is not None
    if not confirm(
        "The PyTorch extension (which picks the torch build for your GPU) is not installed.\n"
        "Install torch and torchvision from PyPI instead (several hundred MB)?"
    ):
        return False
    slicer_module.util.pip_install(pip_arguments(list(TORCH_PACKAGES), constraints))
    return True


def _untested_versions() -> list[str]:
    """Installed packages whose version differs from the tested one, as ``"name version (tested: v)"``."""
    found = []
    for name, tested in tested_versions().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed.split("+", 1)[0] != tested:  # a local build tag (+cu126) is the same release
            found.append(f"{name} {installed} (tested: {tested})")
    return found


def install_dependencies(confirm: Callable[[str], bool], slicer_module=None) -> bool:
    """Ask, then install what is missing under the constraints; True when everything is importable afterwards.

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
    with _constraints() as constraints:
        if any(_project(r) in TORCH_PACKAGES for r in missing) and not _install_torch(
            slicer_module, confirm, constraints
        ):
            return False
        others = [r for r in missing if _project(r) not in TORCH_PACKAGES]
        if others:
            slicer_module.util.pip_install(pip_arguments(others, constraints))
    importlib.invalidate_caches()
    untested = _untested_versions()
    if untested:
        log.warning("installed versions differ from those SlicerUltraSam is tested with: %s", ", ".join(untested))
    still_missing = missing_requirements()
    if still_missing:
        log.error("still missing after installation: %s", ", ".join(still_missing))
    return not still_missing

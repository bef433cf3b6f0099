"""The Slicer extension's packaging: CMake lists, catalog entry, UI file, icon, dependencies.

Slicer itself cannot be built here, so the checks read the files Slicer's build reads and apply
the rules its macros apply (ctkMacroCompilePythonScript's placement of scripts, the catalog
entry's fields), then import the library from a folder laid out the way the extension installs it.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SlicerUltraSam"
LIBRARY_DIR = REPO / "UltraSamLib" / "ultrasam"
MODULE_FILE = MODULE_DIR / "SlicerUltraSam.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SlicerUltraSam.ui"
CATALOG_FILE = REPO / "SlicerUltraSam.json"
CONSTRAINTS_FILE = REPO / "requirements" / "constraints.txt"


# ------------------------------------------------------------------------------------ CMake reading
def cmake_text(path: Path) -> str:
    """The file without comments."""
    return "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())


def cmake_set(path: Path, name: str) -> list[str]:
    """The items of ``set(NAME item ...)`` (the first such call)."""
    match = re.search(rf"\bset\(\s*{name}\s+(.*?)\)", cmake_text(path), re.S)
    assert match, f"set({name} ...) not found in {path}"
    items = match.group(1).split()
    return [item.strip('"') for item in items]


def module_name() -> str:
    return cmake_set(MODULE_DIR / "CMakeLists.txt", "MODULE_NAME")[0]


def module_scripts() -> list[str]:
    return [
        s.replace("${MODULE_NAME}", module_name())
        for s in cmake_set(MODULE_DIR / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS")
    ]


def module_resources() -> list[str]:
    return [
        s.replace("${MODULE_NAME}", module_name())
        for s in cmake_set(MODULE_DIR / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES")
    ]


def library_scripts() -> list[str]:
    return cmake_set(MODULE_DIR / "CMakeLists.txt", "ULTRASAM_LIBRARY_SCRIPTS")


def library_resources() -> list[str]:
    return cmake_set(MODULE_DIR / "CMakeLists.txt", "ULTRASAM_LIBRARY_RESOURCES")


def python_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.py") if "__pycache__" not in p.parts}


# ------------------------------------------------------------------------------------ CMake lists
def test_every_module_python_file_is_listed_and_every_listed_file_exists():
    listed = module_scripts()
    assert len(listed) == len(set(listed))
    on_disk = {f for f in python_files(MODULE_DIR) if not f.startswith("Testing/")}
    assert set(listed) == on_disk
    tests = python_files(MODULE_DIR / "Testing" / "Python")
    registered = re.findall(
        r"slicer_add_python_unittest\(\s*SCRIPT\s+(\S+?)\s*\)",
        cmake_text(MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt"),
    )
    assert tests and set(registered) == tests


def test_every_library_file_is_bundled_and_every_listed_file_exists():
    listed = library_scripts()
    assert len(listed) == len(set(listed))
    assert set(listed) == python_files(LIBRARY_DIR), "UltraSamLib/ultrasam and ULTRASAM_LIBRARY_SCRIPTS differ"
    # what pyproject's package-data ships: "*.json", "assets/*.safetensors"
    data_files = {p.relative_to(LIBRARY_DIR).as_posix() for p in (*LIBRARY_DIR.glob("*.json"), *LIBRARY_DIR.glob("assets/*.safetensors"))}
    assert set(library_resources()) == data_files and "weights.json" in data_files
    for name in listed + library_resources():
        assert (LIBRARY_DIR / name).is_file(), name


def test_resources_are_listed_and_exist():
    listed = module_resources()
    for name in listed:
        assert (MODULE_DIR / name).is_file(), name
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert set(listed) == on_disk
    assert {
        "Resources/Icons/SlicerUltraSam.png",
        "Resources/UI/SlicerUltraSam.ui",
        "Resources/requirements.txt",
    } <= set(listed)


def test_library_is_staged_into_the_package_slicer_installs():
    text = cmake_text(MODULE_DIR / "CMakeLists.txt")
    # ctkMacroCompilePythonScript: an absolute script lands at its path relative to the current
    # binary folder, so the library must be staged under ${CMAKE_CURRENT_BINARY_DIR}/ultrasam.
    assert re.search(r"set\(_ultrasam_staging_dir \$\{CMAKE_CURRENT_BINARY_DIR\}/ultrasam\)", text)
    assert "configure_file(${ULTRASAM_LIBRARY_DIR}/${_file} ${_ultrasam_staging_dir}/${_file} COPYONLY)" in text
    assert "list(APPEND MODULE_PYTHON_SCRIPTS ${_ultrasam_staging_dir}/${_file})" in text
    assert re.search(r"DESTINATION \$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}/ultrasam", text)
    assert text.index("list(APPEND MODULE_PYTHON_SCRIPTS") < text.index("slicerMacroBuildScriptedModule(")
    assert re.search(
        r"slicerMacroBuildScriptedModule\(\s*NAME \$\{MODULE_NAME\}\s*SCRIPTS \$\{MODULE_PYTHON_SCRIPTS\}\s*RESOURCES \$\{MODULE_PYTHON_RESOURCES\}",
        text,
    )
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text and "add_subdirectory(Testing)" in text
    assert "add_subdirectory(Python)" in cmake_text(MODULE_DIR / "Testing" / "CMakeLists.txt")


def test_installed_layout_imports(tmp_path):
    """Lay the files out as the extension installs them and import module and library from there."""
    for name in module_scripts() + module_resources():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MODULE_DIR / name, target)
    for name in library_scripts() + library_resources():
        target = tmp_path / "ultrasam" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(LIBRARY_DIR / name, target)
    shutil.copy2(CONSTRAINTS_FILE, tmp_path / "Resources" / "constraints.txt")  # as CMake stages it
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r});"
        "import ultrasam, ultrasam.propagate, ultrasam.prompts, ultrasam.models, ultrasam.weights as w;"
        "import SlicerUltraSamLib, SlicerUltraSamLib.logic, SlicerUltraSamLib.dependencies as d;"
        "print(ultrasam.__file__); print(SlicerUltraSamLib.__file__); print(len(w.list_weights())); print(d.REQUIREMENTS_FILE.is_file());"
        "print(d.constraints_file())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    library_file, module_file, weights_count, requirements_found, constraints = result.stdout.split()
    assert Path(library_file).is_relative_to(tmp_path) and Path(module_file).is_relative_to(tmp_path)
    assert int(weights_count) >= 1 and requirements_found == "True"
    assert Path(constraints) == tmp_path / "Resources" / "constraints.txt"


def test_the_librarys_constraints_are_staged_with_the_module():
    """The installer reads <scripted-modules dir>/Resources/constraints.txt: CMake copies the one file there."""
    text = cmake_text(MODULE_DIR / "CMakeLists.txt")
    assert re.search(
        r"set\(ULTRASAM_CONSTRAINTS_FILE \$\{CMAKE_CURRENT_SOURCE_DIR\}/\.\./requirements/constraints\.txt\)", text
    )
    assert re.search(
        r"configure_file\(\$\{ULTRASAM_CONSTRAINTS_FILE\}\s+"
        r"\$\{CMAKE_BINARY_DIR\}/\$\{Slicer_QTSCRIPTEDMODULES_LIB_DIR\}/Resources/constraints\.txt COPYONLY\)",
        text,
    )
    assert re.search(
        r"install\(FILES \$\{ULTRASAM_CONSTRAINTS_FILE\}\s+DESTINATION \$\{Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR\}/Resources",
        text,
    )


def test_top_level_cmake_declares_the_extension():
    path = REPO / "CMakeLists.txt"
    text = cmake_text(path)
    assert re.search(r"project\(SlicerUltraSam\)", text)
    for name in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
    ):
        value = re.search(rf'set\({name}\s+"([^"]+)"\)', text)
        assert value and value.group(1).strip(), name
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"NA"\)', text)
    icon_url = re.search(r'set\(EXTENSION_ICONURL\s+"([^"]+)"\)', text).group(1)
    assert icon_url.endswith("/SlicerUltraSam/Resources/Icons/SlicerUltraSam.png")
    order = [
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(SlicerUltraSam)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)


def test_catalog_entry_matches_the_extension():
    entry = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    assert set(entry) == {
        "$schema",
        "build_dependencies",
        "build_subdirectory",
        "category",
        "scm_revision",
        "scm_url",
        "tier",
    }
    assert entry["$schema"].endswith("/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#")
    text = cmake_text(REPO / "CMakeLists.txt")
    category = re.search(r'set\(EXTENSION_CATEGORY\s+"([^"]+)"\)', text).group(1)
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE\s+"([^"]+)"\)', text).group(1)
    assert entry["category"] == category
    assert entry["build_dependencies"] == []  # EXTENSION_DEPENDS NA: the Python-only packaging CI applies
    assert entry["build_subdirectory"] == "."
    assert entry["scm_url"] == homepage + ".git"
    assert isinstance(entry["scm_revision"], str) and entry["scm_revision"]
    assert entry["tier"] in (1, 3, 5)


# ------------------------------------------------------------------------------------ UI and module file
def ui_widgets() -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def test_ui_parses_and_names_every_widget_the_code_uses():
    root = ElementTree.parse(UI_FILE).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "SlicerUltraSam"
    widgets = ui_widgets()
    used = {
        node.attr
        for node in ast.walk(module_tree())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
    }
    assert used and used <= set(widgets), f"missing in the .ui: {sorted(used - set(widgets))}"
    for name in (
        "inputVolumeSelector",
        "positivePointsSelector",
        "negativePointsSelector",
        "roiSelector",
        "segmentationSelector",
        "segmentSelector",
        "modelComboBox",
        "deviceComboBox",
        "liveUpdateCheckBox",
        "segmentButton",
        "propagateButton",
        "cancelButton",
        "undoButton",
        "progressBar",
        "statusLabel",
    ):
        assert name in widgets, name


def test_ui_parameter_names_are_parameter_node_fields_and_scenes_are_connected():
    fields = set()
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ClassDef) and node.name == "SlicerUltraSamParameterNode":
            fields = {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}
    assert fields
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = prop.find("string").text
    assert set(bound.values()) <= fields and {
        "inputVolume",
        "positivePoints",
        "negativePoints",
        "roi",
        "segmentation",
        "liveUpdate",
    } <= set(bound.values())
    root = ElementTree.parse(UI_FILE).getroot()
    receivers = {
        c.find("receiver").text
        for c in root.iter("connection")
        if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"
    }
    mrml_widgets = {
        n
        for n, w in ui_widgets().items()
        if w.get("class", "").startswith(("qMRML", "qSlicer")) and n != "SlicerUltraSam"
    }
    assert mrml_widgets == receivers
    declared = {c.find("class").text for c in root.iter("customwidget")}
    assert {w.get("class") for w in ui_widgets().values() if not w.get("class").startswith("Q")} <= declared


def test_module_file_has_the_scripted_module_classes():
    classes = {
        node.name: [ast.unparse(b) for b in node.bases] for node in module_tree().body if isinstance(node, ast.ClassDef)
    }
    assert classes["SlicerUltraSam"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["SlicerUltraSamWidget"]
    assert classes["SlicerUltraSamTest"] == ["ScriptedLoadableModuleTest"]
    assert "SlicerUltraSamParameterNode" in classes


def test_logic_package_is_qt_free():
    allowed_roots = {"slicer", "vtk", "numpy", "ultrasam"} | set(sys.stdlib_module_names)
    for path in sorted((MODULE_DIR / "SlicerUltraSamLib").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"qt", "ctk", "PythonQt"}, f"{path.name} imports {name}"
                assert name not in {"slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper"}, (
                    f"{path.name} imports {name}"
                )
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # top-level imports: slicer, vtk, numpy, ultrasam, standard library only
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed_roots, f"{path.name}: top-level import of {roots - allowed_roots}"


def test_icon_is_a_128_pixel_png():
    with Image.open(MODULE_DIR / "Resources" / "Icons" / "SlicerUltraSam.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)


# ------------------------------------------------------------------------------------ dependencies
def _dependencies():
    sys.path.insert(0, str(MODULE_DIR))
    from SlicerUltraSamLib import dependencies

    return dependencies


def test_requirements_never_touch_slicers_own_packages():
    deps = _dependencies()
    requirements = deps.read_requirements()
    assert requirements and all(not line.startswith("#") for line in requirements)
    projects = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requirements}
    assert not projects & {p.lower() for p in deps.PROTECTED_PACKAGES}
    assert not projects & {"torch", "torchvision"}  # through PyTorchUtils, separately
    assert "segment-anything" in projects


def test_pip_arguments_pin_protected_packages(tmp_path):
    import importlib.metadata

    deps = _dependencies()
    constraints = deps.protected_constraints()
    assert f"numpy=={importlib.metadata.version('numpy')}" in constraints.splitlines()
    assert f"SimpleITK=={importlib.metadata.version('SimpleITK')}" in constraints.splitlines()
    arguments = deps.pip_arguments(["segment-anything>=1.0", "numpy>=2", "requests"], tmp_path / "c.txt")
    assert arguments.split()[:2] == ["-c", str(tmp_path / "c.txt")]
    assert "numpy" not in arguments and "requests" not in arguments and "'segment-anything>=1.0'" in arguments


def test_missing_requirements_are_found_without_importing():
    deps = _dependencies()
    missing = deps.missing_requirements(
        ["tqdm>=4", "opencv-python-headless", "surely-absent-ultrasam-test-package==1.0"]
    )
    assert missing == ["surely-absent-ultrasam-test-package==1.0"]  # torch is installed here, cv2 maps to opencv


class FakeSlicer:
    """``slicer`` as the installer sees it: ``util.pip_install`` records its arguments and the constraints file's text."""

    def __init__(self) -> None:
        self.installs: list[tuple[list[str], str]] = []
        self.util = self

    def pip_install(self, arguments: str) -> None:
        words = shlex.split(arguments)
        assert words[0] == "-c", arguments  # every install runs under the constraints
        self.installs.append((words[2:], Path(words[1]).read_text(encoding="utf-8")))


def pins_in_constraints_file() -> set[str]:
    return {
        line.strip()
        for line in CONSTRAINTS_FILE.read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }


def test_every_install_runs_under_the_tested_versions_and_slicers_own(monkeypatch):
    import importlib.metadata

    deps = _dependencies()
    assert deps.tested_versions() == {"torch": "2.14.1", "torchvision": "0.29.1"}
    assert {f"{k}=={v}" for k, v in deps.tested_versions().items()} == pins_in_constraints_file()
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # no PyTorch extension: torch from PyPI
    missing = iter([["torch", "torchvision", "segment-anything>=1.0"], []])
    monkeypatch.setattr(deps, "missing_requirements", lambda: next(missing))
    fake = FakeSlicer()

    assert deps.install_dependencies(lambda message: True, fake)

    assert [packages for packages, _ in fake.installs] == [["torch", "torchvision"], ["segment-anything>=1.0"]]
    for _, constraints in fake.installs:
        lines = set(constraints.splitlines())
        assert pins_in_constraints_file() <= lines
        assert f"numpy=={importlib.metadata.version('numpy')}" in lines


@pytest.mark.parametrize("accepts_torchvision", [True, False])
def test_the_pytorch_extension_is_asked_for_the_tested_versions(monkeypatch, accepts_torchvision):
    deps = _dependencies()
    calls = []

    class Logic:
        if accepts_torchvision:

            def installTorch(
                self,
                askConfirmation=False,
                forceComputationBackend=None,
                torchVersionRequirement=None,
                torchvisionVersionRequirement=None,
            ):
                calls.append((askConfirmation, torchVersionRequirement, torchvisionVersionRequirement))
                return object()
        else:  # older PyTorchUtils: torch only (pip then picks the torchvision built for it)

            def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
                calls.append((askConfirmation, torchVersionRequirement, None))
                return object()

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    missing = iter([["torch", "torchvision"], []])
    monkeypatch.setattr(deps, "missing_requirements", lambda: next(missing))
    fake = FakeSlicer()

    assert deps.install_dependencies(lambda message: True, fake)

    assert calls == [(False, "==2.14.1", "==0.29.1" if accepts_torchvision else None)] and fake.installs == []


def test_nothing_is_installed_without_consent(monkeypatch):
    deps = _dependencies()
    monkeypatch.setattr(deps, "missing_requirements", lambda: ["torch", "segment-anything"])
    fake = FakeSlicer()
    assert not deps.install_dependencies(lambda message: False, fake)
    assert fake.installs == []


def test_window_percentiles_match_the_library():
    sys.path.insert(0, str(MODULE_DIR))
    from SlicerUltraSamLib.frame_source import DEFAULT_PERCENTILES

    from ultrasam.transforms import DEFAULT_PERCENTILES as LIBRARY_PERCENTILES

    assert DEFAULT_PERCENTILES == LIBRARY_PERCENTILES


@pytest.mark.parametrize("path", sorted(python_files(MODULE_DIR)))
def test_module_sources_compile(path):
    compile((MODULE_DIR / path).read_text(encoding="utf-8"), path, "exec")

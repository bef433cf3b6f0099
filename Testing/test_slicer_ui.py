"""The widget and its ``.ui`` file, checked statically: there is no Slicer application (no Qt) here.

Everything the widget decides lives in the Qt-free logic and is tested on ``slicer-core``; what is
left — the names the widget uses, the place widgets, the parameter-node bindings, how it waits for
workers — is read from the source and the ``.ui`` XML the way Slicer would use them.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SlicerUltraSam"
MODULE_FILE = MODULE_DIR / "SlicerUltraSam.py"
INPUTS_FILE = MODULE_DIR / "SlicerUltraSamLib" / "inputs.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SlicerUltraSam.ui"
PARAMETER_NODE_METHODS = {"StartModify", "EndModify", "connectGui", "disconnectGui"}


# ------------------------------------------------------------------------------------ reading
def ui_widgets() -> dict[str, ElementTree.Element]:
    return {w.get("name"): w for w in ElementTree.parse(UI_FILE).getroot().iter("widget")}


def ui_property(widget: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((p for p in widget.findall("property") if p.get("name") == name), None)


def node_types(widget: ElementTree.Element) -> list[str]:
    prop = ui_property(widget, "nodeTypes")
    return [] if prop is None else [s.text for s in prop.iter("string")]


def tree(path: Path = MODULE_FILE) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def ui_name(node: ast.AST) -> str | None:
    """``X`` for an expression ``self.ui.X``."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui":
        return node.attr
    return None


def loop_rows(loop: ast.For) -> list[dict[str, str]]:
    """For ``for a, b, ... in ((self.ui.X, self.ui.Y, ...), ...)``: each row's ``{variable: widget}``."""
    if not isinstance(loop.target, ast.Tuple) or not isinstance(loop.iter, ast.Tuple):
        return []
    names = [t.id if isinstance(t, ast.Name) else None for t in loop.target.elts]
    rows = []
    for row in loop.iter.elts:
        if isinstance(row, ast.Tuple):
            rows.append({name: ui_name(value) for name, value in zip(names, row.elts) if name and ui_name(value)})
    return rows


def resolve(node: ast.AST, row: dict[str, str]) -> str | None:
    """The ``.ui`` widget an expression stands for: ``self.ui.X``, or a loop variable of the current row."""
    if ui_name(node):
        return ui_name(node)
    return row.get(node.id) if isinstance(node, ast.Name) else None


def connections(module: ast.Module) -> list[tuple[str | None, str, ast.AST, dict[str, str]]]:
    """``(sender, signal, receiver, row)`` of every ``<sender>.connect("signal", receiver)`` call; a call
    inside a loop over rows of widgets appears once per row, with that row's bindings."""
    found = []

    def visit(node: ast.AST, row: dict[str, str]) -> None:
        if isinstance(node, ast.For) and loop_rows(node):
            for loop_row in loop_rows(node):
                for child in node.body:
                    visit(child, {**row, **loop_row})
            return
        is_connect = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
        if is_connect and len(node.args) > 1 and isinstance(node.args[0], ast.Constant):
            found.append((resolve(node.func.value, row), node.args[0].value, node.args[1], row))
        for child in ast.iter_child_nodes(node):
            visit(child, row)

    visit(module, {})
    return found


def parameter_fields() -> set[str]:
    for node in ast.walk(tree()):
        if isinstance(node, ast.ClassDef) and node.name == "SlicerUltraSamParameterNode":
            return {item.target.id for item in node.body if isinstance(item, ast.AnnAssign)}
    raise AssertionError("SlicerUltraSamParameterNode not found")


def widget_class() -> ast.ClassDef:
    return next(n for n in tree().body if isinstance(n, ast.ClassDef) and n.name == "SlicerUltraSamWidget")


# ------------------------------------------------------------------------------------ names
def test_every_ui_name_the_widget_uses_exists_in_the_ui_file():
    used = {ui_name(n) for n in ast.walk(tree())} - {None}
    widgets = ui_widgets()
    assert used and used <= set(widgets), f"missing in the .ui: {sorted(used - set(widgets))}"


def test_every_parameter_binding_names_a_real_parameter():
    fields = parameter_fields()
    bound = {
        name: ui_property(w, "SlicerParameterName").find("string").text
        for name, w in ui_widgets().items()
        if ui_property(w, "SlicerParameterName") is not None
    }
    assert bound and set(bound.values()) <= fields, sorted(set(bound.values()) - fields)
    # What the widget and SegmentInputs.fromParameters read from the parameter node is a parameter too.
    read = set()
    for module, names in ((tree(), {"node", "_parameterNode"}), (tree(INPUTS_FILE), {"parameters"})):
        for attribute in (n for n in ast.walk(module) if isinstance(n, ast.Attribute)):
            owner = attribute.value
            owner_name = (
                owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
            )
            if owner_name in names:
                read.add(attribute.attr)
    assert read - PARAMETER_NODE_METHODS <= fields, sorted(read - PARAMETER_NODE_METHODS - fields)
    assert {"inputVolume", "positivePoints", "negativePoints", "roi", "segmentation", "segmentId", "minScore"} <= read


# ------------------------------------------------------------------------------------ placement
def test_every_place_widget_shows_its_buttons_and_follows_a_prompt_selector():
    widgets = ui_widgets()
    places = {name for name, w in widgets.items() if w.get("class") == "qSlicerMarkupsPlaceWidget"}
    assert places == {"positivePlaceWidget", "negativePlaceWidget", "roiPlaceWidget"}
    for name in places:
        visible = ui_property(widgets[name], "buttonsVisible")
        assert visible is None or visible.find("bool").text == "true", f"{name} hides its place button"
    followed = {}
    for sender, signal, receiver, row in connections(tree()):
        if (
            signal == "currentNodeChanged(vtkMRMLNode*)"
            and isinstance(receiver, ast.Attribute)
            and receiver.attr == "setCurrentNode"
        ):
            followed.setdefault(resolve(receiver.value, row), set()).add(sender)
    for place in places:
        assert len(followed.get(place, ())) == 1, f"{place} is not given the node of exactly one selector"
        (selector,) = followed[place]
        assert widgets[selector].get("class") == "qMRMLNodeComboBox"
        assert any(t.startswith("vtkMRMLMarkups") for t in node_types(widgets[selector]))
        assert ui_property(widgets[selector], "SlicerParameterName") is not None  # the prompt the run uses
    assert len({frozenset(s) for s in followed.values()}) == len(places)  # one place widget per prompt list


def test_picking_a_point_list_makes_it_the_list_clicks_go_to():
    activated = set()
    activating_methods = set()
    for method in (n for n in widget_class().body if isinstance(n, ast.FunctionDef)):
        calls = {c.func.attr for c in ast.walk(method) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)}
        if "SetActiveList" in calls:
            activating_methods.add(method.name)
    for sender, signal, receiver, _ in connections(tree()):
        if signal == "nodeActivated(vtkMRMLNode*)":
            names = {n.attr for n in ast.walk(receiver) if isinstance(n, ast.Attribute)}
            if names & activating_methods:
                activated.add(sender)
    assert {"positivePointsSelector", "negativePointsSelector"} <= activated


# ------------------------------------------------------------------------------------ inputs and workers
def test_input_selector_never_offers_a_labelmap():
    selector = ui_widgets()["inputVolumeSelector"]
    assert "vtkMRMLLabelMapVolumeNode" not in node_types(selector)
    assert (
        ui_property(selector, "showChildNodeTypes").find("bool").text == "false"
    )  # labelmaps are scalar-volume children
    assert set(node_types(selector)) == {"vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"}


def test_the_gui_thread_never_waits_for_a_worker():
    module = tree()
    imported = {a.name for n in ast.walk(module) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(module) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"threading", "queue", "time", "concurrent.futures"}  # workers live in SlicerUltraSamLib.jobs
    calls = {
        c.func.attr
        for c in ast.walk(module)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and not isinstance(c.func.value, ast.Constant)
    }
    assert not calls & {"join", "wait", "sleep", "result"}  # str.join aside


def test_jobs_are_told_apart_by_kind_never_by_their_label():
    for compare in (n for n in ast.walk(tree()) if isinstance(n, ast.Compare)):
        for side in [compare.left, *compare.comparators]:
            assert not (isinstance(side, ast.Attribute) and side.attr == "label"), ast.unparse(compare)
    kinds = {
        n.attr
        for n in ast.walk(tree())
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "JobKind"
    }
    assert kinds == {"PROPAGATE", "ENCODE", "PRECOMPUTE", "DOWNLOAD"}


@pytest.mark.parametrize("name", ["buildRequest", "segment"])
def test_a_run_is_described_once_by_segment_inputs(name):
    """The 12 run arguments are the fields of SegmentInputs, not repeated in logic and widget signatures."""
    sys.path.insert(0, str(MODULE_DIR))
    import inspect

    from SlicerUltraSamLib import SlicerUltraSamLogic
    from SlicerUltraSamLib.inputs import SegmentInputs

    parameters = inspect.signature(getattr(SlicerUltraSamLogic, name)).parameters
    assert not set(parameters) & {"volumeNode", "positivePointsNode", "sliceIndex", "minScore"}
    assert len(SegmentInputs.__dataclass_fields__) == 12
    widget_source = ast.get_source_segment(MODULE_FILE.read_text(encoding="utf-8"), widget_class())
    assert "SegmentInputs.fromParameters(" in widget_source and "positivePointsNode=" not in widget_source


def test_the_slicing_convention_is_only_read_from_the_library():
    """Which index a slice holds and its rows/columns are ``ultrasam.frames``' table; the module's
    geometry, writer and logic use its helpers instead of restating it (no axis-name tables here)."""
    for path in sorted((MODULE_DIR / "SlicerUltraSamLib").glob("*.py")):
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                values = {v.value for v in node.values if isinstance(v, ast.Constant)}
                assert not (keys | values) >= {"sagittal", "coronal"}, f"{path.name}: {ast.unparse(node)}"


def test_a_propagation_is_written_as_it_runs_and_every_way_of_stopping_it_reverts():
    """Slices reach the segment through a ``LiveApply`` as the poll delivers them; Cancel, a failed job,
    a model change and the module's cleanup put them back (test_slicer_live_apply checks the revert)."""
    methods = {m.name: m for m in widget_class().body if isinstance(m, ast.FunctionDef)}

    def calls(name: str) -> set[str]:
        return {
            c.func.attr
            for c in ast.walk(methods[name])
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
        }

    assert {"beginApply", "_startJob", "publish", "run"} <= calls("_startPropagation")
    assert "apply" not in calls("_startPropagation") | calls("_finishPropagation")
    assert "add" in calls("_addLiveResult") and {"finish", "cancel"} <= calls("_finishPropagation")
    for name in ("onCancel", "_onJobError", "onModelChanged", "_stopJobs"):
        assert "_revertLiveApply" in calls(name), name
    assert "cancel" in calls("_revertLiveApply")
    assert "revert" in (ast.get_docstring(methods["onCancel"]) or "")  # the behaviour is documented

"""Qt-free logic of the SlicerUltraSam module: MRML nodes in, library calls, segments out.

Importable without the Slicer application (``slicer-core`` is enough) and without torch (the
model is imported when first needed), so the module can start, and offer to install its
dependencies, on a fresh Slicer.
"""

from .logic import SlicerUltraSamLogic  # noqa: F401

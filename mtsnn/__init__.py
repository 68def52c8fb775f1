"""mtsnn: a hardware-oriented deployment toolchain for multi-threshold spiking neural networks.

The public API (``mtsnn.api``): ``train``, ``resume``, ``evaluate``, ``export``, ``simulate``,
``validate`` and ``list_targets``, each returning a typed record and raising an ``MtsnnError``
with a one-line message for bad input. The subpackages are the layers, dependencies pointing
one way: ``mtsnn.hw_model`` (numpy only: integer neuron, network records, core description,
reference, targets, mapper, simulator, reports) <- ``mtsnn.toolchain`` (torch + brevitas:
QAT, data sets, training) <- ``mtsnn.export`` (ONNX, core description, validation) <- the API
and the command line (``mtsnn.cli``).

``mtsnn.export`` is both the export subpackage and, called, the API verb ``mtsnn.api.export``.
Importing ``mtsnn`` imports neither torch nor onnx: each verb imports what it needs when called.
"""

from __future__ import annotations

import types as _types

from . import export as _export_package
from .api import (
    DEFAULT_ARCH,
    Evaluation,
    SimulationReport,
    TargetInfo,
    TrainRun,
    evaluate,
    list_targets,
    resume,
    simulate,
    train,
    validate,
)
from .api import export as _export_function
from .hw_model.errors import CheckUnavailable, InputError, MtsnnError

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "train",
    "resume",
    "evaluate",
    "export",
    "simulate",
    "validate",
    "list_targets",
    "TrainRun",
    "Evaluation",
    "SimulationReport",
    "TargetInfo",
    "DEFAULT_ARCH",
    "MtsnnError",
    "InputError",
    "CheckUnavailable",
]


class _CallableExportPackage(_types.ModuleType):
    """The subpackage ``mtsnn.export``, also callable as the API verb ``mtsnn.export(...)``."""

    def __call__(self, checkpoint, **kwargs):
        return _export_function(checkpoint, **kwargs)


_export_package.__class__ = _CallableExportPackage
export = _export_package

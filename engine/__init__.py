"""The cnn-visualiser engine: a NumPy CNN whose every number can be shown and checked.

NumPy and the standard library only; nothing here knows about HTTP.
"""

from engine.errors import EngineError, ShapeError, SpecError, WeightsError
from engine.graph import INPUT, Gradients, Graph, Trace

__all__ = ["INPUT", "EngineError", "Gradients", "Graph", "ShapeError", "SpecError", "Trace", "WeightsError"]

"""Importers that turn models from other frameworks into the engine's graph spec and weights."""

from app.importers.onnx_import import OnnxImportError, import_onnx

__all__ = ["OnnxImportError", "import_onnx"]

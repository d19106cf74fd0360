"""A model's input from an HTTP request: an image (multipart field ``image``, or a raw image body) or a ``.npy`` tensor.

Reading the body is I/O (done in the async dependency ``read_model_input``); decoding and
preprocessing are CPU work (done in the sync route, in the thread pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile

from app.errors import ApiError
from app.imaging import DecodeGate, ImageError, prepare_image
from app.services.models import StoredModel, takes_images
from app.services.tensors import NPY_MEDIA_TYPE, is_npy, parse_npy

NPY_MEDIA_TYPES = {NPY_MEDIA_TYPE, "application/npy", "application/x-numpy"}
IMAGE_FIELD = "image"
RAW_MEDIA_TYPES = ("", "application/octet-stream")  # sniffed: .npy magic, else an image
HOW = ("send an image as multipart field 'image' (curl -F image=@cat.jpg), a raw image body "
       "(Content-Type: image/jpeg), or a .npy tensor (Content-Type: application/x-npy)")

#: the request body for every endpoint that takes a model input, for /docs
INPUT_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "The input: an image (PNG, JPEG, WebP, BMP, GIF's first frame) as multipart field `image`, "
                       "or the preprocessed tensor as a `.npy` body, shape `[C, H, W]` or `[1, C, H, W]`.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": [IMAGE_FIELD], "properties": {
                IMAGE_FIELD: {"type": "string", "format": "binary", "description": "the image file"}}}},
            NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary",
                                        "description": "a float tensor written by numpy.save"}},
            "image/*": {"schema": {"type": "string", "format": "binary", "description": "the image file as the body"}},
        },
    }
}


@dataclass
class ModelInput:
    """The raw bytes of an input and what they are, and what bounds decoding them (an image's memory)."""

    kind: Literal["image", "tensor"]
    data: bytes
    filename: str | None = None
    gate: DecodeGate | None = None


@dataclass
class PreparedInput:
    """``x: (N, *input_shape)`` float32, and the preprocessed picture ``(S, S, 3) uint8`` when the input was one."""

    x: np.ndarray
    picture: np.ndarray | None


async def read_model_input(request: Request, max_bytes: int, gate: DecodeGate | None = None) -> ModelInput:
    """The input in the request body (its size is already capped by the body-limit middleware); an image is
    decoded later within ``gate`` (the machine's decode budget, and the per-image limit)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        async with request.form(max_files=4, max_fields=16) as form:
            item = form.get(IMAGE_FIELD)
            if not isinstance(item, UploadFile):
                fields = ", ".join(f"'{k}'" for k in form) or "none"
                raise ApiError(422, f"no file in multipart field '{IMAGE_FIELD}' (fields sent: {fields}): {HOW}")
            others = [k for k in form if k != IMAGE_FIELD]
            if others:  # options such as method or target would otherwise be silently ignored
                names = ", ".join(f"'{k}'" for k in others)
                raise ApiError(422, f"multipart field(s) {names} are not read: the form takes only '{IMAGE_FIELD}'; "
                                    f"send options in the query string (e.g. ?{others[0]}=...)")
            data = await item.read(max_bytes + 1)
            filename = item.filename
            tensor = (filename or "").lower().endswith(".npy") or is_npy(data[:8])
    elif media_type in NPY_MEDIA_TYPES or media_type.startswith("image/") or media_type in RAW_MEDIA_TYPES:
        data = await request.body()
        filename = None
        tensor = media_type in NPY_MEDIA_TYPES or is_npy(data[:8])
    else:
        raise ApiError(415, f"Content-Type '{media_type}' is not an input this endpoint reads: {HOW}")
    if len(data) > max_bytes:
        raise ApiError(413, f"the input is larger than {max_bytes:,} bytes: send a smaller image or tensor")
    if not data:
        raise ApiError(422, f"the input is empty: {HOW}")
    return ModelInput("tensor" if tensor else "image", data, filename, gate)


def prepare_input(model_input: ModelInput, model: StoredModel, max_bytes: int, max_pixels: int,
                  max_elements: int, single: bool = True) -> PreparedInput:
    """Decode and preprocess the input for ``model``; check it fits the model (422 naming the expected shape)."""
    graph = model.graph
    expected = [*graph.input_shape]
    if model_input.kind == "image":
        if not takes_images(graph):
            raise ApiError(415, f"model '{model.id}' takes tensors of shape [N, {', '.join(map(str, expected))}], "
                                "not images: send a .npy tensor (Content-Type: application/x-npy)")
        try:
            picture = prepare_image(model_input.data, model.bundle.preprocessing, max_bytes, max_pixels,
                                    model_input.gate)
        except ImageError as exc:
            raise ApiError(exc.status_code, str(exc)) from exc
        x = model.bundle.preprocessing.normalize(picture)
        graph.check_input(x)  # a preprocessing that does not fit the model: ShapeError, 422
        return PreparedInput(x, picture)
    x = parse_npy(model_input.data, max_elements)
    if x.ndim == len(expected):
        x = x[None]
    if x.ndim != len(expected) + 1 or list(x.shape[1:]) != expected:
        raise ApiError(422, f"the tensor has shape {list(x.shape)}, but model '{model.id}' takes "
                            f"[{', '.join(map(str, expected))}] or [N, {', '.join(map(str, expected))}] "
                            "(preprocessed as in the model's 'preprocessing')")
    if single and x.shape[0] != 1:
        raise ApiError(422, f"this endpoint explains one input, the tensor holds a batch of {x.shape[0]}: send "
                            "[1, ...] (POST /api/models/{id}/forward takes batches)")
    return PreparedInput(np.ascontiguousarray(x), None)

"""Models: list, architecture, predict, activations, forward, upload (ONNX), share and delete.

Who sees and changes which model: ``app.services.owners``. The list and every /api/models/{id} path show a
caller the built-in models, their own uploads and the ones the lecturer shared; another student's
unshared upload answers 404 as if it did not exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, Query, Response, UploadFile

from app.api.deps import (
    ComputeDep,
    IdentityDep,
    ImportSlotDep,
    ModelDep,
    ModelIdPath,
    ModelInputDep,
    ModelStoreDep,
    OwnerDep,
    RunStoreDep,
    SettingsDep,
    hiding_others,
)
from app.core.config import MB
from app.errors import ApiError
from app.schemas.models import (
    ModelCreated,
    ModelDetail,
    ModelList,
    ModelSummary,
    ParamInfo,
    ParamList,
    PredictResponse,
    UnavailableModel,
)
from app.schemas.runs import ActivationsResponse, NodeActivation
from app.services.architecture import architecture_of
from app.services.compute import forward_gmacs
from app.services.finite import check_finite, check_stats_finite
from app.services.inputs import INPUT_OPENAPI, prepare_input
from app.services.models import PREPROCESSING_PRESETS, StoredModel, num_classes, takes_images
from app.services.owners import Access, Identity, check_admin, check_may_change, may_read
from app.services.predictions import top_classes
from app.services.quotas import ModelQuota, model_quota_check
from app.services.runs import Run
from app.services.steps import sequence_fields
from app.services.tensors import NPY_MEDIA_TYPE, parse_npy, to_npy
from app.services.tiles import tile_layout
from engine.graph import INPUT, Graph

router = APIRouter(prefix="/models", tags=["models"])

TopK = Annotated[int, Query(ge=1, le=1000, description="how many classes to return")]
#: uploads from this size on are imported holding the machine's import slot (smaller ones import in milliseconds)
IMPORT_SLOT_BYTES = 16 * 1024 * 1024


def summarise(model: StoredModel, access: Access, identity: Identity) -> dict:
    """The fields of ModelSummary for ``model``, as ``identity`` sees it (``owned``: they may delete it)."""
    bundle, graph = model.bundle, model.graph
    images = takes_images(graph)
    return {
        "id": model.id, "name": bundle.name, "task": bundle.task, "description": bundle.description,
        "builtin": model.builtin, "input_shape": list(graph.input_shape), "num_classes": num_classes(graph),
        "source": bundle.source, "takes_images": images,
        "preprocessing": bundle.preprocessing.as_dict() if images else None,
        "attention_node": bundle.attention_node, "cam_layer": bundle.cam_layer,
        "param_count": graph.param_count(), "version": model.version,
        "owned": not access.builtin and identity.owns(access.owner), "shared": access.shared and not access.builtin,
    }


@router.get("", response_model=ModelList)
def list_models(store: ModelStoreDep, identity: IdentityDep) -> ModelList:
    """The models you may use: built-in ones, your uploads and the shared ones (the lecturer: every model); those
    whose stored files cannot be loaded apart, in `unavailable`."""
    seen: dict[str, Access] = {}

    def include(model_id: str) -> bool:
        seen[model_id] = store.access(model_id)
        return may_read(seen[model_id], identity)

    models, unavailable = store.survey(include)
    return ModelList(
        models=[summarise(model, seen[model.id], identity) for model in models],
        unavailable=[UnavailableModel(id=e.model_id, name=e.name, builtin=e.builtin, problem=e.problem,
                                      owned=not e.builtin and identity.owns(seen[e.model_id].owner))
                     for e in unavailable])


@router.get("/{model_id}", response_model=ModelDetail)
def read_model(model: ModelDep, store: ModelStoreDep, identity: IdentityDep) -> ModelDetail:
    """The architecture: per node its op, attributes, inputs, output shape, parameters, MACs, receptive field."""
    return ModelDetail(**summarise(model, store.access(model.id), identity), labels=list(model.bundle.labels),
                       architecture=architecture_of(model.graph))


@router.get("/{model_id}/params", response_model=ParamList)
def list_params(model: ModelDep) -> ParamList:
    """Every parameter and buffer: name, node, shape, range, and where to fetch its values."""
    trainable = set(model.graph.trainable_names())
    params = []
    for name, shape in model.graph.param_shapes().items():
        value = model.bundle.params[name]
        params.append(ParamInfo(name=name, node=name.rsplit(".", 1)[0], shape=list(shape), trainable=name in trainable,
                                min=float(value.min()) if value.size else 0.0,
                                max=float(value.max()) if value.size else 0.0,
                                npy_url=f"/api/models/{model.id}/params/{name}.npy"))
    return ParamList(model_id=model.id, params=params)


@router.get("/{model_id}/params/{name}.npy", response_class=Response,
            responses={200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "the parameter as float32 .npy"}})
def read_param(model: ModelDep, name: str) -> Response:
    """One parameter's values (e.g. conv1.weight, shape (K, C / groups, kh, kw)) as float32 .npy."""
    if name not in model.bundle.params:
        raise ApiError(404, f"model '{model.id}' has no parameter '{name}': GET /api/models/{model.id}/params "
                            "lists them")
    return Response(to_npy(model.bundle.params[name]), media_type=NPY_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}.npy"'})


@router.post("/{model_id}/predict", response_model=PredictResponse, openapi_extra=INPUT_OPENAPI)
def create_prediction(model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, compute: ComputeDep,
                      top_k: TopK = 5) -> PredictResponse:
    """The top-k classes for an image (multipart field `image`) or a .npy tensor."""
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    with compute(gmacs=forward_gmacs(model.graph, len(prepared.x))):
        start = time.perf_counter()
        output = model.graph.forward(prepared.x, model.bundle.params, keep_caches=False, keep=()).output[0]
        elapsed = (time.perf_counter() - start) * 1000
    check_finite(model.id, output)
    return PredictResponse(model_id=model.id, classes=top_classes(model, output, top_k),
                           input_shape=list(prepared.x.shape), elapsed_ms=elapsed)


def node_activation(run: Run, graph: Graph, node_id: str, op: str, activation: np.ndarray,
                    stats: dict) -> NodeActivation:
    base = f"/api/runs/{run.run_id}/nodes/{node_id}"
    shape = list(activation.shape[1:])
    return NodeActivation(id=node_id, op=op, shape=shape, **stats, png_url=f"{base}.png", npy_url=f"{base}.npy",
                          layout=tile_layout(tuple(shape), time_axis=run.time_axes.get(node_id)),
                          **sequence_fields(run, graph, node_id, shape))


@router.post("/{model_id}/activations", response_model=ActivationsResponse, openapi_extra=INPUT_OPENAPI)
def create_activations(model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, runs: RunStoreDep,
                       top_k: TopK = 5) -> ActivationsResponse:
    """Run the model on an input: a run id, and per node its shape, statistics and feature-map URLs."""
    prepared = prepare_input(model_input, model, settings.max_upload_bytes, settings.max_image_pixels,
                             settings.max_tensor_elements)
    run, cached = runs.create(model, prepared.x)
    nodes = [node_activation(run, model.graph, INPUT, "input", run.input, runs.stats(run, INPUT))]
    for node in model.graph.nodes:
        act, stats = run.activations[node.id], runs.stats(run, node.id)
        check_stats_finite(model.id, node.id, stats)  # min and max are NaN or infinite when any value is
        nodes.append(node_activation(run, model.graph, node.id, node.op.op, act, stats))
    output = run.activations[model.graph.output_id][0]
    classes = top_classes(model, output, top_k) if output.ndim == 1 else None
    return ActivationsResponse(model_id=model.id, run_id=run.run_id, input_shape=list(run.input.shape), nodes=nodes,
                               classes=classes, elapsed_ms=run.elapsed_ms, cached=cached)


@router.post("/{model_id}/forward", response_class=Response, openapi_extra={
    "requestBody": {"required": True, "content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                    "description": "the input tensor, [N, *input_shape] or [*input_shape], written by numpy.save"},
    "responses": {"200": {"content": {NPY_MEDIA_TYPE: {}},
                          "description": "the output (or the chosen node's activation) as float32 .npy, "
                                         "batch axis included"}}})
def create_forward(model: ModelDep, model_input: ModelInputDep, settings: SettingsDep, compute: ComputeDep,
                   node: Annotated[str | None, Query(description="return this node's activation instead of the "
                                                                 "output")] = None) -> Response:
    """A .npy tensor in, the output (or one node's activation) out as .npy, for tools that preprocess themselves."""
    if model_input.kind != "tensor":
        raise ApiError(415, "POST /forward takes a .npy tensor (Content-Type: application/x-npy); "
                            "for images use /predict or /activations")
    x = parse_npy(model_input.data, settings.max_tensor_elements)
    expected = list(model.graph.input_shape)
    if x.ndim == len(expected):
        x = x[None]
    if node is not None:
        model.graph.node(node)  # UnknownNodeError (404) listing the model's nodes
    if x.ndim == len(expected) + 1 and list(x.shape[1:]) == expected:
        per_sample = model.graph.activation_count()
        limit = settings.max_activation_values
        if x.shape[0] * per_sample > limit:
            raise ApiError(413, f"a batch of {x.shape[0]} needs {x.shape[0] * per_sample:,} activation values on this "
                                f"model, more than the {limit:,} allowed: send batches of at most "
                                f"{max(1, limit // per_sample)}")
    with compute(gmacs=forward_gmacs(model.graph, len(x))):
        start = time.perf_counter()
        out = model.graph.forward(x, model.bundle.params, keep_caches=False, stop_at=node, keep=()).output
        elapsed = (time.perf_counter() - start) * 1000
    return Response(to_npy(out), media_type=NPY_MEDIA_TYPE,
                    headers={"X-Shape": json.dumps(list(out.shape)), "X-Elapsed-Ms": f"{elapsed:.1f}",
                             "Content-Disposition": f'attachment; filename="{node or "output"}.npy"'})


def parse_labels(text: str | None) -> list[str] | None:
    """Labels as a JSON list of strings, or one per line; None when not given."""
    if text is None or not text.strip():
        return None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            labels = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ApiError(422, f"labels look like JSON but do not parse ({exc.msg}): send a JSON list of "
                                "strings, or one label per line") from exc
        if not isinstance(labels, list) or not all(isinstance(label, str | int) for label in labels):
            raise ApiError(422, "labels must be a JSON list of strings, or one label per line")
        return [str(label) for label in labels]
    return [line.strip() for line in stripped.splitlines()]


@router.post("", response_model=ModelCreated, status_code=201, responses={
    409: {"description": "you keep as many models (or bytes) as one person may: delete one of yours"},
    507: {"description": "the server keeps as many models (or bytes) as it may: ask the lecturer"}})
def create_model(
    response: Response,
    store: ModelStoreDep,
    settings: SettingsDep,
    owner: OwnerDep,
    importing: ImportSlotDep,
    file: Annotated[UploadFile, File(description="the .onnx model file (at most `CNN_VIS_MAX_MODEL_BYTES`)",
                                     examples=["my-cnn.onnx"])],
    name: Annotated[str | None, Form(max_length=200, description="display name (default: the ONNX graph's name)",
                                     examples=["My small CNN"])] = None,
    labels: Annotated[str | None, Form(description="class names: a JSON list, or one per line",
                                       examples=['["cat", "dog", "bird"]'])] = None,
    preprocessing: Annotated[Literal["imagenet", "unit", "symmetric"], Form(
        description="how images are normalised for this model: " + "; ".join(
            f"{k}: {v['text']}" for k, v in PREPROCESSING_PRESETS.items()), examples=["imagenet"])] = "imagenet",
) -> ModelCreated:
    """Upload an ONNX model: imported into the engine's graph, stored in the data directory, kept across restarts.

    It is yours: only you (this browser's cookie, or the returned `owner_token` sent back as `X-Owner-Token`) and
    the lecturer see and delete it, unless the lecturer shares it. The same file uploaded again by you: 200, the
    same model; by someone else: their own copy."""
    size = file.file.seek(0, os.SEEK_END)  # the upload is spooled to a temporary file: measured, not read
    file.file.seek(0)
    if size > settings.max_model_bytes:
        raise ApiError(413, f"the model file ({size:,} bytes) is larger than the {settings.max_model_bytes:,} bytes "
                            "this server accepts (CNN_VIS_MAX_MODEL_BYTES): upload a smaller model (fewer or "
                            "float16-free float32 weights)", limit_bytes=settings.max_model_bytes)
    if size == 0:
        raise ApiError(422, "the uploaded file is empty: send the .onnx file in multipart field 'file'")
    quota = ModelQuota(settings.quota_models_per_owner, settings.quota_model_bytes_per_owner,
                       settings.quota_models_total, settings.quota_model_bytes_total)
    # an import holds about three copies of the weights at its peak: big ones take the machine's one import
    # slot, so that a class uploading VGG-16 at the same moment does not hold thirty times 1.7 GiB
    with importing() if size >= IMPORT_SLOT_BYTES else contextlib.nullcontext():
        model, created = store.add_onnx(file.file, file.filename, name, parse_labels(labels), preprocessing,
                                        max_input_elements=settings.max_tensor_elements,
                                        max_activation_values=settings.max_activation_values, owner=owner.owner,
                                        quota=model_quota_check(store.upload_usage, owner.owner, owner.admin, quota))
    if not created:
        response.status_code = 200
    assert owner.token is not None
    return ModelCreated(**summarise(model, store.access(model.id), owner), created=created,
                        onnx=model.bundle.extra.get("onnx", {}), owner_token=owner.token)


#: what importing a big model costs, measured by scripts/bench_model_upload.py (2 cores, one worker)
UPLOAD_COST = ("An import holds about three times the file's size in memory at its peak, big ones one at a time "
               "on the machine, and stores about its size on disk. VGG-16 (528 MiB) took 7 s from the last byte "
               "sent to the answer, with 1.7 GiB at the peak, and 0.4 s for its first forward pass.")


def upload_limit(max_model_bytes: int) -> str:
    """The upload limit in words: 'at most 600 MiB (629,145,600 bytes; this server's `CNN_VIS_MAX_MODEL_BYTES`)'."""
    return (f"at most {max_model_bytes / MB:,.0f} MiB ({max_model_bytes:,} bytes; this server's "
            "`CNN_VIS_MAX_MODEL_BYTES`)")


def describe_upload(schema: dict, max_model_bytes: int) -> None:
    """Write this server's upload limit (and what an upload costs) into the OpenAPI ``schema`` of POST /api/models."""
    operation = schema["paths"]["/api/models"]["post"]
    operation["description"] = (operation.get("description", "").rstrip() + f"\n\nThe file may be "
                                f"{upload_limit(max_model_bytes)}. {UPLOAD_COST}")
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    file = schema["components"]["schemas"][body]["properties"]["file"]
    file["description"] = f"the .onnx model file, {upload_limit(max_model_bytes)}"


def document_upload_limit(app: FastAPI) -> None:
    """Make ``app.openapi()`` state the upload limit of ``app.state.settings``, never a constant that could go
    stale (wraps the schema generator in place; call it after ``app.openapi_errors.document_errors``)."""
    generate = app.openapi

    def openapi() -> dict:
        fresh = app.openapi_schema is None
        schema = generate()
        if fresh:
            describe_upload(schema, app.state.settings.max_model_bytes)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


@router.delete("/{model_id}", status_code=204, response_class=Response, responses={
    403: {"description": "a built-in model, or someone else's: only its owner or the lecturer may delete it"}})
def delete_model(model_id: ModelIdPath, store: ModelStoreDep, identity: IdentityDep) -> Response:
    """Delete one of your uploaded models (the lecturer: any uploaded model; built-in models cannot be deleted)."""
    with hiding_others(store, identity, model_id):
        access = store.access(model_id)
        if not access.builtin:
            check_may_change(access, identity, "model", "delete", "uploaded")
        store.delete(model_id)
    return Response(status_code=204)


SHARE_RESPONSES = {403: {"description": "only the lecturer (X-Admin-Token) may share models"},
                   409: {"description": "a built-in model: everyone sees it already"}}


def set_sharing(model_id: str, store: ModelStoreDep, identity: Identity, shared: bool) -> ModelSummary:
    check_admin(identity, "share models with everyone" if shared else "stop sharing a model")
    with hiding_others(store, identity, model_id):
        store.set_shared(model_id, shared)
        model = store.get(model_id)
    return ModelSummary(**summarise(model, store.access(model_id), identity))


@router.post("/{model_id}/share", response_model=ModelSummary, responses=SHARE_RESPONSES)
def create_share(model_id: ModelIdPath, store: ModelStoreDep, identity: IdentityDep) -> ModelSummary:
    """The lecturer shares an uploaded (or trained) model with everyone: it appears in every student's list, and
    only its owner and the lecturer may still delete it. Example: `curl -X POST -H 'X-Admin-Token: …'
    /api/models/onnx-1a2b3c4d5e6f/share`."""
    return set_sharing(model_id, store, identity, True)


@router.delete("/{model_id}/share", response_model=ModelSummary, responses=SHARE_RESPONSES)
def delete_share(model_id: ModelIdPath, store: ModelStoreDep, identity: IdentityDep) -> ModelSummary:
    """The lecturer stops sharing a model: again only its owner (and the lecturer) see it."""
    return set_sharing(model_id, store, identity, False)

"""The model store: built-in models from ``engine.models.registry`` and ONNX models uploaded by users.

Uploaded models live under ``<data dir>/models/<id>/`` as ``spec.json`` + ``weights.npz`` +
``meta.json``, so they survive restarts and every worker process sees them. An uploaded model's
id is a hash of the ONNX file and of its owner (``meta.json``'s ``owner``, a token hash, see
``app.services.owners``): the same person uploading the same file twice gets the same model, and another
person uploading it gets a copy of their own, which they alone may delete (no one loses a model because
someone else deleted "theirs"). ``meta.json``'s ``shared`` says the lecturer made it visible to everyone.
Networks trained in the training lab are stored the same way under ``trained-<job id>`` (``add_trained``).
Loaded models are cached per process (a few at a time); their weights are mapped from ``weights.npz``
(``engine.models.aligned_npz``), so workers share one copy in the page cache, and a stored weights file is
never written again in place (a mapped file cut short would crash the process reading it). A model deleted by
another worker is noticed because its directory is gone. An upload is copied in pieces to a staging file and
imported from there (``add_onnx``): its bytes are never all in memory beside the parsed model.

A stored model whose files cannot be loaded (app/services/model_files.py) answers 409 saying why, is
listed apart by :meth:`ModelStore.survey`, and can still be deleted. Writes go through
app/services/storage.py: a full or read-only disk is a 507 or 503, and nothing half-written stays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from app.errors import ApiError, not_found, shorten
from app.services.model_files import DamagedModelError, read_stored
from app.services.owners import Access
from app.services.redis_client import RedisUnavailableError
from app.services.storage import staging, writing
from engine.errors import EngineError
from engine.graph import Graph
from engine.models.bundle import ModelBundle, Preprocessing
from engine.models.weights import save_weights

if TYPE_CHECKING:
    from app.services.redis_models import RedisModelCatalogue

UPLOAD_PREFIX = "onnx-"
TRAINED_PREFIX = "trained-"  # networks trained in the training lab, stored like uploads (not counted in the quotas)
STORED_PREFIXES = (UPLOAD_PREFIX, TRAINED_PREFIX)
#: an upload is copied to its staging file in pieces of this size (never all of it in memory)
COPY_PIECE_BYTES = 1024 * 1024

log = logging.getLogger("cnn_visualiser.models")

#: how an uploaded model's pixels are normalised; shorter side resized to ``ratio * size``, centre crop ``size``
PREPROCESSING_PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "ratio": 256 / 224,
                 "text": "ImageNet mean/std (torchvision's convention), shorter side to 8/7 of the size, centre crop"},
    "unit": {"mean": (0.0,), "std": (1.0,), "ratio": 1.0, "text": "pixels in [0, 1], resized and centre-cropped"},
    "symmetric": {"mean": (0.5,), "std": (0.5,), "ratio": 1.0, "text": "pixels in [-1, 1], resized and centre-cropped"},
}


@dataclass
class StoredModel:
    """A loaded model and what identifies its exact weights (part of every run id)."""

    bundle: ModelBundle
    version: str
    builtin: bool
    owner: str | None = None  # the owner's token hash (uploaded and trained models); None: nobody's
    shared: bool = False  # as loaded: ModelStore.access() reads an uploaded model's afresh

    @property
    def id(self) -> str:
        return self.bundle.id

    @property
    def graph(self) -> Graph:
        return self.bundle.graph


class ModelUnavailableError(ApiError):
    """409: a model that exists but cannot be loaded (damaged files, missing weights package); says why."""

    def __init__(self, model_id: str, problem: str, name: str | None = None, builtin: bool = False) -> None:
        remedy = ("ask the lecturer or admin to repair the installation" if builtin else
                  f"delete it (DELETE /api/models/{shorten(model_id)}) and upload the ONNX file again")
        super().__init__(409, f"model '{shorten(model_id)}' cannot be loaded: {problem}; {remedy}", problem=problem)
        self.model_id = model_id
        self.problem = problem
        self.name = name
        self.builtin = builtin


def builtin_loaders(cache_dir: Path) -> dict[str, Callable[[], ModelBundle]]:
    """Built-in model id -> loader, from ``engine.models.registry`` (converted weights cached in ``cache_dir``)."""
    from engine.models import registry

    return {entry.id: (lambda model_id=entry.id: registry.load_model(model_id, cache_dir))
            for entry in registry.list_models()}


def fingerprint(graph: Graph, params: Mapping[str, np.ndarray]) -> str:
    """A short hash of a model's spec and weights: runs of different weights never share an id."""
    digest = hashlib.sha256(json.dumps(graph.spec, sort_keys=True, default=str).encode())
    for name in sorted(params):
        value = np.ascontiguousarray(params[name], dtype=np.float32)
        digest.update(name.encode() + str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def num_classes(graph: Graph) -> int | None:
    """K when the model's output is a vector of K class scores, else None."""
    shape = graph.nodes[-1].output_shape
    return int(shape[0]) if len(shape) == 1 else None


def uploaded_preprocessing(input_shape: tuple[int, ...], preset: str) -> Preprocessing:
    """Preprocessing for an uploaded model that takes ``(C, S, S)`` images, C = 1 (grey) or 3 (RGB)."""
    settings = PREPROCESSING_PRESETS[preset]
    channels, size = input_shape[0], input_shape[-1]
    mean, std = settings["mean"], settings["std"]
    if len(mean) == 1:
        mean, std = mean * channels, std * channels
    elif channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return Preprocessing(resize=round(size * settings["ratio"]), crop=size, mean=tuple(mean), std=tuple(std),
                         grayscale=channels == 1)


def upload_id(digest: str, owner: str | None) -> str:
    """An uploaded model's id from its file's sha256 and its owner's token hash (none: the file's alone)."""
    if owner is None:
        return UPLOAD_PREFIX + digest[:12]
    return UPLOAD_PREFIX + hashlib.sha256(f"{digest}:{owner}".encode()).hexdigest()[:12]


def directory_bytes(directory: Path) -> int:
    """The bytes the files directly in ``directory`` take (0 when it is gone)."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
    return total


def staged_file_name(filename: str | None) -> str:
    """The name of an upload's staged copy: the user's file name without folders or unprintable characters
    (``model.onnx`` when nothing is left)."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = "".join(c for c in name if c.isprintable()).strip()
    name = name.encode()[:120].decode(errors="ignore")  # well under a file system's 255 bytes
    return name if name not in ("", ".", "..") else "model.onnx"


def takes_images(graph: Graph) -> bool:
    """True when the input is a square (C, S, S) image with 1 or 3 channels (else only .npy tensors)."""
    shape = graph.input_shape
    return len(shape) == 3 and shape[0] in (1, 3) and shape[1] == shape[2]


class ModelStore:
    """Built-in and uploaded models, loaded on demand and cached (``cache_size`` uploaded models per process).

    Stored models (uploads and trained networks) live in ``<data_dir>/models``, which every worker of the machine
    reads; with a ``catalogue`` (Redis: ``app.services.redis_models``) the catalogue is the deployment's list, and
    the directory a cache of it, so every machine serves every model."""

    def __init__(self, data_dir: Path, builtins: Mapping[str, Callable[[], ModelBundle]] | None = None,
                 cache_size: int = 4, catalogue: RedisModelCatalogue | None = None) -> None:
        self.catalogue = catalogue
        self.models_dir = Path(data_dir) / "models"
        self.builtins = dict(builtin_loaders(Path(data_dir) / "cache") if builtins is None else builtins)
        self.standard_builtins = builtins is None  # another ModelStore(data_dir) has the same built-ins
        self.cache_size = cache_size
        self._builtin_cache: dict[str, StoredModel] = {}
        self._uploaded_cache: OrderedDict[str, StoredModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._temporary: dict[str, StoredModel] = {}  # in memory, this process only (trained networks: add_trained)
        self._commit_lock = threading.Lock()  # quota check and rename of an upload, one at a time

    # --- reading -------------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Built-in ids first (in registry order), then uploaded ones (oldest first)."""
        return list(self.builtins) + self.uploaded_ids() + list(self._temporary)

    def uploaded_ids(self) -> list[str]:
        if self.catalogue is not None:
            try:
                return [model_id for model_id in self.catalogue.ids() if is_stored_id(model_id)]
            except RedisUnavailableError as exc:  # the built-in models still answer; uploaded ones say why not
                log.warning("uploaded models are not listed: %s", exc.message)
                return []
        if not self.models_dir.is_dir():
            return []
        found = []
        for path in self.models_dir.iterdir():
            if path.name.startswith(STORED_PREFIXES) and (path / "meta.json").is_file():
                with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                    found.append((path.stat().st_mtime, path.name))
        return [name for _, name in sorted(found)]

    def available(self, include: Callable[[str], bool] | None = None) -> list[StoredModel]:
        """Every model that can be loaded now (one deleted while the list is read is left out); with ``include``,
        only the ids it accepts (the others are not even loaded)."""
        return self.survey(include)[0]

    def survey(self, include: Callable[[str], bool] | None = None
               ) -> tuple[list[StoredModel], list[ModelUnavailableError]]:
        """Every model that can be loaded now, and every one that cannot, with why (one deleted meanwhile: neither);
        with ``include``, only the ids it accepts (the others are not even loaded)."""
        models: list[StoredModel] = []
        unavailable: list[ModelUnavailableError] = []
        for model_id in self.ids():
            try:
                if include is None or include(model_id):
                    models.append(self.get(model_id))
            except ModelUnavailableError as exc:
                unavailable.append(exc)
            except ApiError as exc:
                if exc.status_code != 404:
                    raise
        return models, unavailable

    def get(self, model_id: str) -> StoredModel:
        """The model, loaded once per process; 404 naming the known ids if there is none."""
        if model_id in self.builtins:
            return self._get_builtin(model_id)
        if model_id in self._temporary:
            return self._temporary[model_id]
        directory = self.models_dir / model_id
        if is_stored_id(model_id):
            meta = self._sync(model_id, directory) if self.catalogue is not None else None
            if (directory / "meta.json").is_file():
                stored = self._get_uploaded(model_id, directory)
                if meta is not None and (stored.owner, stored.shared) != (meta.get("owner"), bool(meta.get("shared"))):
                    stored = dataclasses.replace(stored, owner=meta.get("owner"), shared=bool(meta.get("shared")))
                    with self._lock:  # shared or unshared on another machine since this one loaded it
                        if model_id in self._uploaded_cache:
                            self._uploaded_cache[model_id] = stored
                return stored
        with self._lock:
            self._uploaded_cache.pop(model_id, None)
        raise not_found("model", model_id, self.ids())

    def _sync(self, model_id: str, directory: Path) -> dict[str, Any] | None:
        """With a catalogue: bring this machine's copy in line with it (fetch a model stored elsewhere, remove one
        deleted elsewhere); returns the catalogue's meta.json (None: no such model, or damaged)."""
        assert self.catalogue is not None
        try:
            meta = self.catalogue.meta(model_id)
        except ValueError:
            return None
        if meta is None:
            if directory.is_dir():
                self._remove_local(model_id, directory)
            return None
        if not (directory / "meta.json").is_file():
            with writing("copying the model from the shared store"):
                self.catalogue.fetch(model_id, self.models_dir)
        return meta

    def _stored(self, model_id: str) -> bool:
        """Whether a stored model has this id (in the catalogue, or this data directory without one)."""
        if self.catalogue is not None:
            return self.catalogue.has(model_id)
        return (self.models_dir / model_id / "meta.json").is_file()

    def reloadable(self, model_id: str) -> bool:
        """Whether another process's ``ModelStore(data_dir).get(model_id)`` loads this same model (built-in, or
        stored in the data directory), so work on it can be handed to a child process."""
        if model_id in self.builtins:
            return self.standard_builtins
        if model_id in self._temporary:
            return False
        return (self.models_dir / model_id / "meta.json").is_file()

    def access(self, model_id: str) -> Access:
        """Whose the model is and whether it is shared, read afresh from meta.json (another worker may have
        shared it meanwhile); 404 when there is no such model. Unreadable meta.json: nobody's."""
        if model_id in self.builtins:
            return Access(None, shared=True, builtin=True)
        temporary = self._temporary.get(model_id)
        if temporary is not None:
            return Access(temporary.owner, temporary.shared)
        if self.catalogue is not None:
            if not is_stored_id(model_id):
                raise not_found("model", model_id, self.ids())
            try:
                found = self.catalogue.meta(model_id)
            except ValueError:
                return Access(None)
            if found is None:
                raise not_found("model", model_id, self.ids())
            return Access(found.get("owner"), bool(found.get("shared")))
        try:
            meta = json.loads(self._meta_path(model_id).read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise not_found("model", model_id, self.ids()) from None
        except ValueError:
            return Access(None)
        return Access(meta.get("owner"), bool(meta.get("shared")))

    def upload_usage(self) -> list[tuple[str | None, int]]:
        """(owner, bytes on disk) of every uploaded model, for the quotas (with a catalogue: the deployment's)."""
        if self.catalogue is not None:
            return [((meta or {}).get("owner"), size) for model_id, meta, size in self.catalogue.usage()
                    if model_id.startswith(UPLOAD_PREFIX)]
        usage = []
        for model_id in self.uploaded_ids():
            if not model_id.startswith(UPLOAD_PREFIX):
                continue  # a trained network: not an upload
            directory = self.models_dir / model_id
            try:
                owner = json.loads((directory / "meta.json").read_text()).get("owner")
            except FileNotFoundError:
                continue  # deleted meanwhile
            except ValueError:
                owner = None
            usage.append((owner, directory_bytes(directory)))
        return usage

    def _meta_path(self, model_id: str) -> Path:
        """meta.json of an uploaded model (404 for an id that cannot be one)."""
        if not model_id.startswith(STORED_PREFIXES) or "/" in model_id or model_id in (".", ".."):
            raise not_found("model", model_id, self.ids())
        return self.models_dir / model_id / "meta.json"

    def _load_lock(self, model_id: str) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(model_id, threading.Lock())

    def _get_builtin(self, model_id: str) -> StoredModel:
        cached = self._builtin_cache.get(model_id)
        if cached is not None:
            return cached
        with self._load_lock(model_id):  # one thread loads (EfficientNet converts its weights once), others wait
            cached = self._builtin_cache.get(model_id)
            if cached is None:
                try:
                    bundle = self.builtins[model_id]()
                except (EngineError, OSError) as exc:  # e.g. the weights package is missing: the others still work
                    log.warning("built-in model '%s' cannot be loaded: %s", model_id, exc)
                    raise ModelUnavailableError(model_id, str(exc), builtin=True) from exc
                version = str(bundle.extra.get("version") or fingerprint(bundle.graph, bundle.params))
                cached = self._builtin_cache[model_id] = StoredModel(bundle, version, builtin=True)
        return cached

    def _get_uploaded(self, model_id: str, directory: Path) -> StoredModel:
        with self._lock:
            cached = self._uploaded_cache.get(model_id)
            if cached is not None:
                self._uploaded_cache.move_to_end(model_id)
                return cached
        with self._load_lock(model_id):
            try:
                files = read_stored(directory)
            except DamagedModelError as exc:
                if not (directory / "meta.json").is_file():  # deleted (by another request or worker) since get()
                    raise not_found("model", model_id, self.ids()) from None
                raise ModelUnavailableError(model_id, exc.problem, exc.name) from None
            meta, graph, params = files.meta, files.graph, files.params
            bundle = ModelBundle(
                id=model_id, name=meta["name"], task=meta["task"], graph=graph, params=params, labels=meta["labels"],
                preprocessing=files.preprocessing, source=meta["source"], description=str(meta.get("description", "")),
                cam_layer=meta.get("cam_layer"),
                extra={"onnx": meta.get("info", {}), "uploaded_at": meta.get("uploaded_at")})
            stored = StoredModel(bundle, meta["version"], builtin=False, owner=meta.get("owner"),
                                 shared=bool(meta.get("shared")))
        with self._lock:
            self._uploaded_cache[model_id] = stored
            while len(self._uploaded_cache) > self.cache_size:
                self._uploaded_cache.popitem(last=False)
        return stored

    # --- writing -------------------------------------------------------------------------------
    def add_temporary(self, bundle: ModelBundle, owner: str | None = None) -> StoredModel:
        """Keep ``bundle`` in memory as a model until the process ends (listed last; not a built-in).

        ``owner``: whose it is (a token hash), e.g. the owner of the training job that trained it."""
        with self._lock:
            previous = self._temporary.get(bundle.id)
            stored = StoredModel(bundle, fingerprint(bundle.graph, bundle.params), builtin=False, owner=owner,
                                 shared=previous is not None and previous.shared)
            self._temporary[bundle.id] = stored
        return stored

    def add_trained(self, bundle: ModelBundle, owner: str | None = None) -> StoredModel:
        """Store a network trained in the lab (id ``trained-...``) like an upload, so that every worker serves it
        and it survives restarts; ``owner``: the training job's. Idempotent: a stored one is kept as it is
        (shared or not)."""
        if not bundle.id.startswith(TRAINED_PREFIX) or "/" in bundle.id:
            raise ValueError(f"a trained model's id starts with '{TRAINED_PREFIX}', got {bundle.id!r}")
        if not self._stored(bundle.id):
            meta = {"id": bundle.id, "name": bundle.name, "task": bundle.task, "source": bundle.source,
                    "labels": list(bundle.labels), "version": fingerprint(bundle.graph, bundle.params),
                    "uploaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "preprocessing": bundle.preprocessing.as_dict(), "description": bundle.description,
                    "cam_layer": bundle.cam_layer, "info": {}, "owner": owner, "shared": False}
            self._store_files(bundle.id, bundle.graph.spec, bundle.params, meta)
        return self.get(bundle.id)

    def add_onnx(self, data: bytes | BinaryIO, filename: str | None, name: str | None, labels: list[str] | None,
                 preset: str = "imagenet", max_input_elements: int | None = None,
                 max_activation_values: int | None = None, owner: str | None = None,
                 quota: Callable[[int], None] | None = None) -> tuple[StoredModel, bool]:
        """Import and store an ONNX model. Returns the model and whether it is new (same bytes and owner: same id).

        ``data``: the file's bytes, or a binary file positioned at its start (the upload route's spooled upload,
        read in pieces: the whole file is never held as one more bytes object).

        ``owner``: the uploader's token hash, kept in meta.json. ``quota(new_bytes)`` raises when storing
        ``new_bytes`` more would exceed a limit: called with 0 before the import, then with the stored size
        just before the model appears (under a lock, so this process's uploads do not overtake each other).

        ``max_input_elements``: refuse a model whose single input is larger (it could never be run here).
        ``max_activation_values``: refuse a model whose activations for one input add up to more (a tiny file
        can upsample or pad to gigabytes; every run of the explorer keeps all activations).
        """
        from app.importers.onnx_import import OnnxImportError, import_onnx

        upload = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
        with self._staged_upload(upload, filename) as (path, digest):
            model_id = upload_id(digest, owner)
            if self._stored(model_id):
                return self.get(model_id), False
            if quota is not None:
                quota(0)  # refuse before the import's work when the count is already at its limit
            try:
                # from the file: the importer drops its bytes once parsed (VGG-16: 528 MiB less at its peak)
                spec, params, info = import_onnx(path, name=name)
            except OnnxImportError as exc:
                raise ApiError(422, str(exc), problems=exc.problems,
                               unsupported=[{"op_type": op, "node": node} for op, node in exc.unsupported]) from exc
        graph = Graph(spec)
        graph.check_params(params)
        elements = math.prod(graph.input_shape)
        if max_input_elements is not None and elements > max_input_elements:
            raise ApiError(422, f"the model takes inputs of shape {list(graph.input_shape)} = {elements:,} values, "
                                f"more than the {max_input_elements:,} this server accepts in one input, so it could "
                                "never run here: export it for a smaller input size")
        activations = graph.activation_count()
        if max_activation_values is not None and activations > max_activation_values:
            largest = max(graph.nodes, key=lambda node: math.prod(node.output_shape))
            raise ApiError(422, f"one input makes {activations:,} activation values in this model, more than the "
                                f"{max_activation_values:,} this server keeps for one run (the largest node, "
                                f"'{largest.id}', has shape {list(largest.output_shape)}): export the model for a "
                                "smaller input or with smaller upsampling or padding")
        classes = num_classes(graph)
        if labels is not None and classes is not None and len(labels) != classes:
            raise ApiError(422, f"{len(labels)} labels were given but the model has {classes} outputs: "
                                f"give exactly {classes} labels (one per line, or a JSON list), or none")
        if labels is None:
            labels = [f"class {i}" for i in range(classes)] if classes else []
        preprocessing = uploaded_preprocessing(graph.input_shape, preset) if takes_images(graph) else None
        display_name = name or info.get("name") or (filename or "ONNX model")
        meta = {
            "id": model_id, "name": display_name, "task": "uploaded ONNX model",
            "source": f"uploaded ONNX file {filename or ''} (sha256 {digest[:16]}…)".replace("  ", " "),
            "labels": labels, "version": digest[:16], "uploaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "preprocessing": (preprocessing or Preprocessing(0, 0, (0.0,), (1.0,))).as_dict(),
            "preprocessing_preset": preset if preprocessing else None,
            "description": PREPROCESSING_PRESETS[preset]["text"] if preprocessing else
            "input is not a square 1- or 3-channel image: send .npy tensors",
            "info": info, "owner": owner, "shared": False,
        }
        self._store_files(model_id, spec, params, meta, quota)
        return self.get(model_id), True

    @contextlib.contextmanager
    def _staged_upload(self, upload: BinaryIO, filename: str | None) -> Iterator[tuple[Path, str]]:
        """The upload copied in pieces to a staging file named like the user's (the importer names a model after
        its file when the graph has no name of its own), and its sha256; the file is removed afterwards."""
        with contextlib.ExitStack() as cleanup:
            with writing("receiving the uploaded model"):
                self.models_dir.mkdir(parents=True, exist_ok=True)
                cleanup.enter_context(staging(self.models_dir))
                staged = Path(tempfile.mkdtemp(prefix=".upload-", dir=self.models_dir))
                cleanup.callback(shutil.rmtree, staged, ignore_errors=True)
                path = staged / staged_file_name(filename)
                digest = hashlib.sha256()
                with open(path, "wb") as out:
                    while piece := upload.read(COPY_PIECE_BYTES):
                        digest.update(piece)
                        out.write(piece)
            yield path, digest.hexdigest()

    def _store_files(self, model_id: str, spec: dict, params: Mapping[str, np.ndarray], meta: dict,
                     quota: Callable[[int], None] | None = None) -> None:
        """Write the model into a staging directory, then rename it into place: all or nothing, even if killed."""
        target = self.models_dir / model_id
        with writing("storing the uploaded model"):
            self.models_dir.mkdir(parents=True, exist_ok=True)
            with staging(self.models_dir):
                staged = Path(tempfile.mkdtemp(prefix=".upload-", dir=self.models_dir))
                try:
                    (staged / "spec.json").write_text(json.dumps(spec))
                    save_weights(staged / "weights.npz", dict(params))
                    (staged / "meta.json").write_text(json.dumps(meta, default=str))
                    try:
                        with self._commit_lock:
                            if quota is not None and not target.is_dir():
                                quota(directory_bytes(staged))
                            os.rename(staged, target)  # atomic: other workers see all or nothing
                    except OSError:
                        if (target / "meta.json").is_file():
                            self._publish(model_id, target)  # another request stored the same file meanwhile
                            return
                        if target.exists():
                            raise ApiError(409, f"a damaged copy of model '{model_id}' is in the way: delete it "
                                                f"(DELETE /api/models/{model_id}) and upload again") from None
                        raise
                finally:
                    shutil.rmtree(staged, ignore_errors=True)
        self._publish(model_id, target)

    def _publish(self, model_id: str, target: Path) -> None:
        """With a catalogue, make the stored model every machine's; when that fails, remove it here too (it could
        not be listed, and an upload answered with an error must leave nothing behind)."""
        if self.catalogue is None:
            return
        try:
            self.catalogue.publish(model_id, target)
        except Exception:
            self._remove_local(model_id, target)
            raise

    def _remove_local(self, model_id: str, directory: Path) -> bool:
        """Remove this machine's copy of a stored model; whether there was one to remove. Renamed within its
        folder first (atomic: of two concurrent removals one wins; and no new directory is needed, so a full disk
        can still be cleared; a server killed before the removal leaves a .delete-*), then deleted."""
        trash = self.models_dir / f".delete-{secrets.token_hex(4)}-{model_id}"
        try:
            with writing("deleting the model"):
                os.rename(directory, trash)
        except FileNotFoundError:
            return False
        finally:
            with self._lock:
                self._uploaded_cache.pop(model_id, None)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def set_shared(self, model_id: str, shared: bool) -> None:
        """Share an uploaded or trained model with everyone (or stop sharing it); 409 for a built-in one."""
        if model_id in self.builtins:
            raise ApiError(409, f"'{model_id}' is a built-in model: everyone sees it already")
        with self._lock:
            temporary = self._temporary.get(model_id)
            if temporary is not None:
                self._temporary[model_id] = dataclasses.replace(temporary, shared=shared)
                return
        path = self._meta_path(model_id)
        damaged = ApiError(409, f"model '{model_id}' cannot be shared: its meta.json is damaged; delete it "
                                f"(DELETE /api/models/{model_id}) and upload the ONNX file again")
        try:
            if self.catalogue is not None:  # the deployment's record; this machine's copy follows if it has one
                if not self.catalogue.set_shared(model_id, shared):
                    raise not_found("model", model_id, self.ids())
                with contextlib.suppress(FileNotFoundError, NotADirectoryError, ValueError), \
                        writing("sharing the model"):
                    self._rewrite_meta(path, shared)
            else:
                with writing("sharing the model"):
                    self._rewrite_meta(path, shared)
        except (FileNotFoundError, NotADirectoryError):
            raise not_found("model", model_id, self.ids()) from None
        except ValueError:
            raise damaged from None
        finally:
            with self._lock:
                self._uploaded_cache.pop(model_id, None)

    @staticmethod
    def _rewrite_meta(path: Path, shared: bool) -> None:
        """meta.json with ``shared`` set, replaced atomically, the directory's time kept."""
        meta = json.loads(path.read_text())
        meta["shared"] = shared
        times = path.parent.stat()
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".meta-", suffix=".json",
                                         delete=False) as new:
            new.write(json.dumps(meta, default=str))
        try:
            os.replace(new.name, path)  # atomic: readers see the old or the new meta.json, never half
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(new.name)
        # the directory's time orders the list: sharing does not make a model newer
        os.utime(path.parent, ns=(times.st_atime_ns, times.st_mtime_ns))

    def delete(self, model_id: str) -> None:
        """Remove an uploaded model; built-ins are refused with 403 (409 would suggest it could work later)."""
        if model_id in self.builtins:
            raise ApiError(403, f"'{model_id}' is a built-in model and cannot be deleted; only uploaded models "
                                f"(ids starting with '{UPLOAD_PREFIX}') can")
        if self._temporary.pop(model_id, None) is not None:
            return
        directory = self.models_dir / model_id
        if not is_stored_id(model_id):
            raise not_found("model", model_id, self.ids())
        if self.catalogue is not None:  # the deployment's record; other machines drop their copies when asked
            removed = self.catalogue.remove(model_id)
            self._remove_local(model_id, directory)
        else:
            removed = directory.is_dir() and self._remove_local(model_id, directory)
        if not removed:
            raise not_found("model", model_id, self.ids())


def is_stored_id(model_id: str) -> bool:
    """Whether ``model_id`` can name a stored model (an upload or a trained network): never a path."""
    return model_id.startswith(STORED_PREFIXES) and "/" not in model_id and model_id not in (".", "..")

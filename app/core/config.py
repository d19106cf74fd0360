"""Settings from the environment (``CNN_VIS_*``) and a ``.env`` file, with pydantic-settings.

Every setting has a default that works on a laptop; override it with an environment variable,
e.g. ``CNN_VIS_DATA_DIR=/var/lib/cnn-visualiser`` or ``CNN_VIS_CORS_ORIGINS=http://localhost:3000,https://x.org``
(lists are comma-separated), or with the same lines in a ``.env`` file in the working directory (the
environment wins). ``create_app(settings)`` keeps the settings it is given on ``app.state.settings``, and the
routes read them from there (``app.api.deps.get_settings``); ``load_settings()`` reads the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "CNN_VIS_"
MB = 1024 * 1024
#: a recording pass keeps every activation: one run (or a batch) may hold this many activation values per
#: allowed input element (``Settings.max_activation_values``)
ACTIVATIONS_PER_TENSOR_ELEMENT = 16
#: host names every server answers to (``Settings.allowed_hosts``'s default, with the bound address)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: bind addresses meaning "every interface": no single name to add to the allowed hosts
ALL_INTERFACES = ("0.0.0.0", "::", "[::]", "")


class Settings(BaseSettings):
    """What the app may do and where it keeps its data (``Settings()`` reads ``CNN_VIS_*`` and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore")

    data_dir: Path = Field(Path("data"), description="uploaded models, converted weights and caches live here")
    max_upload_bytes: int = Field(20 * MB, gt=0, description="largest image or .npy tensor accepted, in bytes")
    max_model_bytes: int = Field(600 * MB, gt=0, description="largest ONNX model accepted, in bytes (VGG-16 is 528 "
                                                             "MiB; importing one holds about three times its "
                                                             "size in memory at its peak, one big import at a "
                                                             "time on the machine)")
    max_image_pixels: int = Field(40_000_000, gt=0, description="largest decoded image (width × height)")
    max_tensor_elements: int = Field(8_000_000, gt=0, description="largest input tensor, in elements")
    run_cache_size: int = Field(8, ge=1, description="how many forward passes (runs) each worker keeps in memory")
    run_cache_mb: int = Field(320, ge=1, description="memory the runs kept in memory may take, in MiB, all the "
                                                     "`workers` together (each keeps its share)")
    training_max_jobs: int = Field(2, ge=1, description="training-lab jobs running at once, all workers together "
                                                        "(more: 429)")
    training_max_kept: int = Field(50, ge=1, description="training-lab jobs kept in the data directory's state.sqlite3 "
                                                         "(or Redis, with redis_url; oldest finished ones are "
                                                         "forgotten first)")
    max_attention_gmacs: float = Field(
        40.0, gt=0, description="work one attention request may do, in billions of multiply-accumulates "
                                "(EfficientNet-Lite0: 0.39 a forward pass, about 0.03 s here; a backward pass counts "
                                "twice): many-pass methods' defaults shrink to fit")
    attention_job_gmacs: float = Field(
        2.0, gt=0, description="attention requests estimated at this much work or more (billions of multiply-"
                               "accumulates, counted as for max_attention_gmacs) run as background jobs (202), as "
                               "Score-CAM, SmoothGrad, Integrated Gradients and occlusion always do")
    attention_max_jobs: int = Field(4, ge=1, description="attention jobs running at once on this machine, all "
                                                         "workers together (with redis_url: in the whole deployment, "
                                                         "queued ones too; more: 429)")
    attention_jobs_per_owner: int = Field(2, ge=1, description="attention jobs one person may run at once (more: "
                                                               "429; the lecturer is not limited)")
    analysis_max_jobs: int = Field(2, ge=1, description="analysis jobs (top examples, feature visualisation, "
                                                        "projections, probes) running at once on this machine, all "
                                                        "workers together (more: 429)")
    analysis_jobs_kept: int = Field(500, ge=1, description="finished analysis jobs kept in the data directory as "
                                                           "the cache of their answers (the least recently used are "
                                                           "removed first)")
    analysis_job_ttl_s: float = Field(3600.0, gt=0, description="failed or cancelled analysis jobs older than this "
                                                                "many seconds are removed")
    attention_jobs_kept: int = Field(100, ge=1, description="finished attention jobs kept in the data directory "
                                                            "(the oldest are removed first)")
    attention_job_ttl_s: float = Field(3600.0, gt=0, description="finished attention jobs older than this many "
                                                                 "seconds are removed")
    compute_slots: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1,
                               description="heavy forward/backward passes run at once on the machine, "
                                           "shared by every worker; others queue (bounds memory under load)")
    compute_wait_s: float = Field(120.0, gt=0, description="how long a request may queue for a compute slot (then 503)")
    body_timeout_s: float = Field(
        30.0, gt=0, description="longest pause while a request body arrives (then 408): a client declaring more "
                                "than it sends cannot hold a connection")
    malloc_arenas: int = Field(2, ge=0, description="cap on glibc malloc arenas (bounds memory under concurrent "
                                                  "load; 0 leaves the C library's default)")
    preload: bool = Field(True, description="load the built-in models in the background at start-up")
    host: str = Field("127.0.0.1", description="address `cnn-visualiser serve` binds to")
    port: int = Field(8000, ge=0, le=65535, description="port `cnn-visualiser serve` listens on")
    workers: int = Field(1, ge=1, description="worker processes for `cnn-visualiser serve`")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API from a browser")
    admin_token: str | None = Field(
        None, repr=False, min_length=16,
        description="the lecturer's secret, sent as the X-Admin-Token header: share models with everyone, delete "
                    "or cancel anything, see every model and job (unset: there is no lecturer)")
    quota_models_per_owner: int = Field(10, ge=1, description="uploaded models one person may keep (more: 409)")
    quota_model_bytes_per_owner: int = Field(1024 * MB, ge=1, description="bytes on disk one person's uploaded "
                                                                          "models may take (more: 409); a model "
                                                                          "takes about its ONNX file's size")
    quota_running_jobs_per_owner: int = Field(2, ge=1, description="training jobs one person may run at once "
                                                                   "(more: 429); 2 lets the lab's runs A and B "
                                                                   "train side by side")
    quota_models_total: int = Field(200, ge=1, description="uploaded models the server keeps in all (more: 507)")
    quota_model_bytes_total: int = Field(4096 * MB, ge=1, description="bytes on disk all uploaded models may take "
                                                                     "(more: 507); with redis_url, Redis holds "
                                                                     "them in memory too")
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None, description="host names (the Host header, port ignored) this server answers to; others get 400 "
                          "(DNS rebinding). Default: localhost, 127.0.0.1, [::1] and `host` when it is one address. "
                          "'*' allows every host (then a reverse proxy must check it); '.example.org' allows "
                          "example.org and its subdomains")
    light_work_gmacs: float = Field(
        0.05, gt=0, description="work under this (billions of multiply-accumulates: a digit model's forward pass "
                                "is 0.002, EfficientNet-Lite0's 0.39) runs in the light lane, which never waits "
                                "behind heavy work")
    light_compute_slots: int = Field(1, ge=1, description="light passes run at once on the machine, beside the "
                                                          "compute_slots heavy ones")
    background_compute_slots: int = Field(1, ge=1, description="passes of background jobs (many-pass attention "
                                                               "maps) run at once on the machine, at a lower CPU "
                                                               "priority, beside the heavy and light ones")
    blas_threads: int = Field(1, ge=0, description="BLAS threads per matrix product in each worker (the compute "
                                                   "slots already run passes in parallel; 0 leaves BLAS's default "
                                                   "of one per core)")
    idle_trim_s: float = Field(5.0, ge=0, description="give freed memory back to the system after this many "
                                                      "seconds without computing (0: never)")
    busy_trim_s: float = Field(2.0, ge=0, description="while passes keep running, give freed memory back to the "
                                                      "system this often, in seconds (0: only at rest)")
    thread_pool_size: int = Field(
        100, ge=1, description="threads each worker may use for blocking requests (AnyIO's default is 40): "
                               "requests waiting for a compute slot hold one, and must leave some for the "
                               "cheap requests")
    max_decode_mb: int = Field(256, ge=1, description="memory decoding one image may take, estimated from its "
                                                      "header, in MiB (more: 413)")
    decode_budget_mb: int = Field(512, ge=8, description="memory all images being decoded at once on the machine "
                                                         "may take, in MiB (others wait)")
    decode_wait_s: float = Field(60.0, gt=0, description="how long a request may wait for the decode budget "
                                                        "(then 503)")
    redis_url: str | None = Field(
        None, repr=False,
        description="several machines: the Redis server they share, e.g. redis://redis-host:6379/0 (a password as "
                    "redis://:secret@host:6379/0, TLS as rediss://). Training and heavy attention jobs then run "
                    "through RQ queues on it, executed by `cnn-visualiser worker` processes, and any replica "
                    "answers for any job (unset: everything stays on this machine, in the data directory)")
    job_stale_s: float = Field(
        30.0, gt=0, description="with redis_url: a job whose worker has not been heard from for this many seconds "
                                "(its process or machine died) reads as failed, 'interrupted'")
    compute_trace_file: Path | None = Field(
        None, description="debugging: append a line 'pid lane start end' (monotonic seconds) per compute slot "
                          "held to this file (unset: none)")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        """``"a, b"`` (as environment variables write lists) → ``["a", "b"]``."""
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("admin_token", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty ``CNN_VIS_ADMIN_TOKEN=`` means no lecturer (not a too-short token), an empty
        ``CNN_VIS_REDIS_URL=`` no Redis."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        """A Redis URL as redis-py reads it: ``redis://``, ``rediss://`` (TLS) or ``unix://`` (a socket)."""
        if value is not None and value.strip().partition("://")[0].lower() not in ("redis", "rediss", "unix"):
            raise ValueError("must be a Redis URL such as redis://redis-host:6379/0 (or rediss://, unix://)")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _default_allowed_hosts(self) -> Settings:
        """Fill in the default hosts, and write every host as it is compared (lower case, no port, [IPv6])."""
        if self.allowed_hosts is None:
            bound = [] if self.host.strip() in ALL_INTERFACES else [self.host]
            self.allowed_hosts = list(LOOPBACK_HOSTS) + bound
        self.allowed_hosts = list(dict.fromkeys(normalize_host(h) for h in self.allowed_hosts if h.strip()))
        return self

    @property
    def max_activation_values(self) -> int:
        """Activation values one run or one batch may hold: 16 per allowed input element."""
        return ACTIVATIONS_PER_TENSOR_ELEMENT * self.max_tensor_elements


def normalize_host(host: str) -> str:
    """``host`` as Host headers are compared: lower case, without port or trailing dot, an IPv6 address in [].

    ``"Example.ORG:8000"`` → ``"example.org"``, ``"[::1]:8000"`` and ``"::1"`` → ``"[::1]"``; ``"*"`` stays.
    """
    host = host.strip().lower()
    if host.startswith("["):  # [IPv6] or [IPv6]:port
        return host[:host.find("]") + 1] if "]" in host else host
    if host.count(":") > 1:  # a bare IPv6 address (only in settings: a Host header brackets it)
        return f"[{host}]"
    return host.partition(":")[0].rstrip(".")


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Settings from the environment and ``env_file``; a bad value is a ValueError naming its variable."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid setting in the environment: {problems}") from exc


@lru_cache
def get_settings() -> Settings:
    """The process's settings from its environment, read once (the command line and ``create_app()``)."""
    return load_settings()

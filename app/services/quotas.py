"""Storage quotas for uploaded models: per owner (count and bytes) and for the whole server.

Per-owner limits are the caller's to resolve (delete one of their models): 409, the request conflicts with
what they already keep. Server-wide limits are not: 507 Insufficient Storage, ask the lecturer. The
lecturer is exempt from the per-owner limits, not from the server's. The limits count what is on disk
(spec, weights and meta.json of each model), checked against every worker's uploads in the data
directory; two workers storing at the same instant may both pass (the limits are soft by one model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.errors import ApiError

MB = 1024 * 1024


def megabytes(size: int) -> str:
    """``size`` bytes in words: '12.3 MB'."""
    return f"{size / MB:,.1f} MB"


@dataclass(frozen=True)
class ModelQuota:
    """The limits on uploaded models (``Settings.quota_*``)."""

    models_per_owner: int
    bytes_per_owner: int
    models_total: int
    bytes_total: int


def check_model_quota(usage: list[tuple[str | None, int]], owner: str | None, exempt: bool, quota: ModelQuota,
                      new_bytes: int) -> None:
    """Raise when one more model of ``new_bytes`` would exceed a limit. ``usage``: (owner, bytes) per stored
    model; ``exempt``: the lecturer (no per-owner limits). ``new_bytes`` 0: only the counts are checked."""
    if not exempt:
        mine = [size for who, size in usage if who is not None and who == owner]
        if len(mine) >= quota.models_per_owner:
            raise ApiError(409, f"you have {len(mine)} uploaded models already, the most one person may keep "
                                f"({quota.models_per_owner}): delete one (DELETE /api/models/{{id}}, or the "
                                "Delete button on the upload page) and upload again",
                           limit=quota.models_per_owner, used=len(mine))
        if new_bytes and sum(mine) + new_bytes > quota.bytes_per_owner:
            raise ApiError(409, f"your uploaded models take {megabytes(sum(mine))} and this one "
                                f"{megabytes(new_bytes)}, more than the {megabytes(quota.bytes_per_owner)} one "
                                "person may keep: delete one of yours (DELETE /api/models/{id}) or upload a "
                                "smaller model", limit_bytes=quota.bytes_per_owner, used_bytes=sum(mine))
    if len(usage) >= quota.models_total:
        raise ApiError(507, f"this server keeps at most {quota.models_total} uploaded models and has that many: "
                            "ask the lecturer to delete some, then upload again", limit=quota.models_total)
    total = sum(size for _, size in usage)
    if new_bytes and total + new_bytes > quota.bytes_total:
        raise ApiError(507, f"the uploaded models on this server take {megabytes(total)}; with this one "
                            f"({megabytes(new_bytes)}) they would pass the {megabytes(quota.bytes_total)} it "
                            "keeps: ask the lecturer to delete some, or upload a smaller model",
                       limit_bytes=quota.bytes_total)


def model_quota_check(usage: Callable[[], list[tuple[str | None, int]]], owner: str | None, exempt: bool,
                      quota: ModelQuota) -> Callable[[int], None]:
    """``check(new_bytes)`` for ``ModelStore.add_onnx``: reads the usage afresh each time it is called."""
    return lambda new_bytes: check_model_quota(usage(), owner, exempt, quota, new_bytes)

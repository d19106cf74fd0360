"""Analysis jobs (``app.services.analysis_jobs``): the long computations of what a network learned."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class AnalysisJob(BaseModel):
    """A long analysis computed in the background: follow `events_url`, then fetch `result_url`. Equal requests
    share one job, and a finished job is the cached answer."""

    id: str = Field(..., description="the job's id (a hash of what it computes)", examples=["5d41402abc4b2a76"])
    kind: str = Field(..., description="what it computes", examples=["feature-visualisation"])
    model_id: str = Field(..., description="the model it is about", examples=["digits_classic"])
    status: JobStatus = Field(..., description="queued, running, done, failed or cancelled", examples=["running"])
    done: int = Field(..., description="steps done so far", examples=[48])
    total: int | None = Field(None, description="steps in all (null until it starts)", examples=[128])
    created_at: float = Field(..., description="when it was asked for (Unix time, seconds)", examples=[1764940000.5])
    started_at: float | None = Field(None, description="when it started computing (Unix time)", examples=[None])
    finished_at: float | None = Field(None, description="when it ended (Unix time), null while it runs",
                                      examples=[None])
    error: str | None = Field(None, description="why it failed", examples=[None])
    error_status: int | None = Field(None, description="the HTTP status of that error", examples=[None])
    owned: bool = Field(False, description="you started it (you may cancel it)", examples=[True])
    status_url: str = Field(..., description="GET: this summary", examples=["/api/jobs/5d41402abc4b2a76"])
    events_url: str = Field(..., description="GET: progress as server-sent events (progress, then end)",
                            examples=["/api/jobs/5d41402abc4b2a76/events"])
    result_url: str = Field(..., description="GET: the result once done",
                            examples=["/api/jobs/5d41402abc4b2a76/result"])
    preview_url: str | None = Field(None, description="GET: the latest picture of the work so far, when the job "
                                                      "draws one (a feature visualisation improving)",
                                    examples=["/api/jobs/5d41402abc4b2a76/files/preview.png"])


class AnalysisJobCreated(AnalysisJob):
    """202: the answer is being computed; follow `events_url`, then GET `result_url`."""


def job_view(status: dict[str, Any], owner: str | None) -> AnalysisJob:
    """The public view of a job's status (``owner``: the asker's token hash, to say whether they started it)."""
    fields = {name: status.get(name) for name in AnalysisJob.model_fields if name != "owned"}
    return AnalysisJob(**fields, owned=owner is not None and status.get("owner") == owner)

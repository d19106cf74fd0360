"""Domain errors the services raise: what cannot be done and why, in the caller's terms, with no HTTP status.

app/errors.py maps them to statuses in one place (``install_error_handlers``): each ``UnusableRequestError`` is a 422
(readable but unusable). A node id the model does not have is ``engine.errors.UnknownNodeError`` (404, one message
listing the model's nodes), raised by ``Graph.node`` or ``app.services.runs.activation_of``.
"""

from __future__ import annotations


class UnusableRequestError(Exception):
    """Base class: a well-formed request that cannot be carried out; the message says what would work."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownMethodError(UnusableRequestError):
    """An attribution method this server does not offer."""

    def __init__(self, method: str, known: list[str]) -> None:
        self.method = method
        hint = ""
        if method.replace(" ", "+") in known:  # '+' in a query string means a space
            hint = f" ('+' in a URL is a space: write method={method.replace(' ', '%2B')})"
        super().__init__(f"unknown method '{method}'{hint}; choose one of: {', '.join(known)}")


class UnknownClassError(UnusableRequestError):
    """A target class past the model's last class."""

    def __init__(self, model_id: str, target: int, classes: int) -> None:
        self.target = target
        super().__init__(f"target {target} is not a class of model '{model_id}': use 0 to {classes - 1}")


class UnfitMapError(UnusableRequestError):
    """An attention map whose shape cannot be laid over the input picture."""

    def __init__(self, method: str, shape: list[int], height: int, width: int) -> None:
        super().__init__(f"method '{method}' gave a map of shape {shape}, which cannot be laid over a "
                         f"{height}×{width} input")


class ForeignRunError(UnusableRequestError):
    """A run made with another model than the one asked about."""

    def __init__(self, run_id: str, run_model_id: str, model_id: str) -> None:
        super().__init__(f"run '{run_id}' belongs to model '{run_model_id}', not '{model_id}'")

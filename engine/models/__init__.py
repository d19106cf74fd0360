"""Built-in models and the bundle format they share."""

from engine.models.bundle import ModelBundle, Preprocessing

__all__ = ["ModelBundle", "Preprocessing"]

"""Pydantic request and response models: the API's documentation at /docs."""

"""The web app: a thin FastAPI layer over the NumPy engine (REST API under /api, pages, static files)."""

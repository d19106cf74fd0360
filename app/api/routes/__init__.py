"""One module per resource, each declaring ``router = APIRouter(prefix=..., tags=[...])``."""

"""The HTTP side: FastAPI app, problem responses, administrator API."""

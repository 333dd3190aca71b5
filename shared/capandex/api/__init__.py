"""What every function's FastAPI app shares: the app factory, dependencies and base models."""

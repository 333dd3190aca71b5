"""What every function's FastAPI app shares: the app factory, dependencies and the OpenAPI document
(the models they exchange build on :mod:`capandex.models`)."""

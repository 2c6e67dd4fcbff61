"""The scoring / selection service: :class:`Service` (library) and :func:`create_app` (HTTP shell)."""

from adlens.serve.service import ServeConfig, Service

__all__ = ["ServeConfig", "Service", "create_app"]


def create_app(service: Service, on_shutdown=None):
    """FastAPI app over ``service`` (imported lazily: the library does not need FastAPI)."""
    from adlens.serve.app import create_app as _create

    return _create(service, on_shutdown)

"""The service's web listener: the read-only dashboard beside ``/healthz``, ``/readyz`` and
``/metrics``, one Starlette app served by uvicorn in the service's process."""

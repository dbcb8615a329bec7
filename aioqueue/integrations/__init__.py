"""Web-framework integration: open the app with the web server, reach it from
handlers, and answer for jobs (status, wait with a deadline, progress events).

* :mod:`aioqueue.integrations.starlette`: FastAPI and Starlette (lifespan,
  ``Depends(aioqueue_app)``);
* :mod:`aioqueue.integrations.aiohttp`: aiohttp (``cleanup_ctx``);
* :mod:`aioqueue.integrations.asgi`: any ASGI application without lifespan
  support of its own (Django);
* :mod:`aioqueue.integrations.web`: framework-neutral helpers the others use.

Each framework module imports its framework; install the framework yourself.
"""

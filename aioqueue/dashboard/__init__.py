"""A web dashboard for aioqueue (``pip install 'aioqueue[dashboard]'``).

Standalone: ``aioqueue dashboard MODULE:ATTR --bind 127.0.0.1:8080``.
Mounted in a Starlette or FastAPI application that opens the App itself::

    app.mount("/queues", create_dashboard(aq_app, auth=my_auth))
"""

from .app import REQUIRED, create_dashboard
from .security import Authenticator, TokenAuth

__all__ = ["REQUIRED", "Authenticator", "TokenAuth", "create_dashboard"]

"""The nself sample shop API: a small WSGI application served by gunicorn.

The application object lives in :mod:`nself_sample_api.app`; importing this package
has no side effects, so its helpers can be unit-tested without any configuration.
"""

__version__ = "1.0.0"

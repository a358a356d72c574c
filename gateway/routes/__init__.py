"""The gateway's routes by concern, each module a thin adapter over the logic it calls.

:mod:`~gateway.routes.player` (the web player and ops pages, static files),
:mod:`~gateway.routes.ops` (health, readiness, metrics, the ops API),
:mod:`~gateway.routes.api` (sign-in, catalogue, recommendations, plays, audio) and
:mod:`~gateway.routes.ws` (``/ws``); :mod:`gateway.app` puts them together.
"""

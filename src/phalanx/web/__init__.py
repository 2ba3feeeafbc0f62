"""The dashboard's HTML: pure functions from the API's JSON (decoded) to page markup, the
inline SVG charts, and the static assets (``static/``: one stylesheet, one small script).

Nothing here reads the store or the control plane: ``phalanx.api.ui`` fetches what a page
shows through the API itself (so the API's authentication and roles decide what appears) and
hands the decoded JSON to these renderers. Imports only the standard library; must not import
api, controllers, store, backends or scheduling.
"""

from __future__ import annotations

from phalanx.web.jobs import render_job, render_jobs
from phalanx.web.pages import (
    render_login,
    render_nodes,
    render_overview,
    render_problem,
    render_queues,
    render_reports,
)
from phalanx.web.static import STATIC_FILES, static_file

__all__ = [
    "STATIC_FILES",
    "render_job",
    "render_jobs",
    "render_login",
    "render_nodes",
    "render_overview",
    "render_problem",
    "render_queues",
    "render_reports",
    "static_file",
]

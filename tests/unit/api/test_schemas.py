"""One schema source: the API's response models and the client's types are the same
TypedDicts (``phalanx.api.schemas``), the OpenAPI is generated from them, and the client
imports them without FastAPI or pydantic."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

from fastapi import FastAPI
from fastapi.routing import APIRoute

from phalanx import client
from phalanx.api import schemas
from phalanx.client import _types as client_types

SCHEMAS_FILE = Path(schemas.__file__)
TYPED_DICTS = {
    name: value
    for name, value in vars(schemas).items()
    if isinstance(value, type) and value.__module__ == schemas.__name__
}
#: Components FastAPI adds on its own for request validation errors (we answer those with
#: ErrorInfo, see api/errors.py).
FASTAPI_OWN = {"HTTPValidationError", "ValidationError"}


def test_the_client_types_are_the_api_schemas_themselves() -> None:
    exported = list(client_types.__all__)
    assert exported, "the client exports no types"
    for name in exported:
        assert getattr(client_types, name) is TYPED_DICTS[name], name
        assert getattr(client, name) is TYPED_DICTS[name], name


def test_schemas_import_only_the_standard_library() -> None:
    tree = ast.parse(SCHEMAS_FILE.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "typing", "typing_extensions"}, imported


def test_importing_the_client_loads_no_server_dependency() -> None:
    code = (
        "import sys, phalanx.client, phalanx.cli.main\n"
        "heavy = {'fastapi', 'pydantic', 'starlette', 'sqlalchemy', 'uvicorn', 'alembic'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('phalanx.api.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", "['phalanx.api.schemas']"]


def test_every_response_model_is_one_of_the_schemas(app: FastAPI) -> None:
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/api/v1/"):
            continue
        if route.response_model is None:  # 204s and the watch stream
            continue
        model = route.response_model
        item = getattr(model, "__args__", (model,))[0]  # list[JobInfo] -> JobInfo
        assert item in TYPED_DICTS.values(), (route.path, model)


def test_the_openapi_components_are_the_schemas_field_for_field(app: FastAPI) -> None:
    components = app.openapi()["components"]["schemas"]
    ours = set(components) - FASTAPI_OWN
    assert ours <= set(TYPED_DICTS), ours - set(TYPED_DICTS)
    assert {"JobInfo", "QueueInfo", "FlavorInfo", "MetadataInfo", "ErrorInfo"} <= ours
    for name in ours:
        typed_dict = TYPED_DICTS[name]
        assert list(components[name]["properties"]) == list(get_type_hints(typed_dict)), name
        # The docstring is the description /docs shows.
        assert components[name]["description"].split() == (typed_dict.__doc__ or "").split()


def test_every_reference_in_the_openapi_resolves(app: FastAPI) -> None:
    document = app.openapi()
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                refs.append(ref)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert "#/components/schemas/JobInfo" in refs
    prefix = "#/components/schemas/"
    assert all(r.startswith(prefix) for r in refs), refs
    missing = {r for r in refs if r.removeprefix(prefix) not in document["components"]["schemas"]}
    assert not missing
    watch = document["paths"]["/api/v1/watch"]["get"]["responses"]["200"]["content"]
    assert set(watch["text/event-stream"]["itemSchema"]["properties"]) == set(
        get_type_hints(schemas.WatchEvent)
    )

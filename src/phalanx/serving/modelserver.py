"""A model server speaking the Open Inference Protocol (V2) over REST: ``phalanx serve-model``.

Loads one model from a file: scikit-learn estimators saved with joblib (``.joblib``,
``.pkl``, ``.pickle``) and ONNX models (``.onnx``, run by onnxruntime on CPU). Endpoints (the
protocol's REST binding, as KServe and Triton serve it):

- ``GET /v2/health/live``, ``GET /v2/health/ready``: 200 when live / when the model is
  loaded;
- ``GET /v2``: server metadata (name, version, extensions);
- ``GET /v2/models/{name}[/versions/{v}]``: model metadata (platform, typed inputs and
  outputs with shapes, ``-1`` for a free dimension);
- ``GET /v2/models/{name}[/versions/{v}]/ready``;
- ``POST /v2/models/{name}[/versions/{v}]/infer``: typed tensors in, typed tensors out, as
  JSON ``data`` or in the binary tensor extension (``Inference-Header-Content-Length``; each
  input's ``parameters.binary_data_size``; outputs in binary when asked by
  ``parameters.binary_data`` or the request's ``binary_data_output``), which the official
  Triton client uses by default.

Errors are V2 error bodies, ``{"error": "<message>"}``, with 400 (a bad request: the message
names the input, the field and what was expected), 404 (no such model or version) or 500.

A scikit-learn model has one input, ``input-0`` (FP64 unless the estimator was fitted on
FP32, shape ``[-1, n_features]``), and the outputs ``predict`` and, for classifiers with
probabilities, ``predict_proba``. An ONNX model's inputs and outputs are the graph's tensor
inputs and outputs (non-tensor outputs, like scikit-learn-onnx's ZipMap, are left out; export
classifiers with ``zipmap=False``).

Needs the ``serve`` extra (numpy, scikit-learn, joblib, onnxruntime); imported only by
``phalanx serve-model``.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from phalanx import __version__

log = logging.getLogger(__name__)

__all__ = [
    "InferenceError",
    "Model",
    "TensorSpec",
    "create_app",
    "infer",
    "load_model",
    "serve",
]

#: V2 datatypes and numpy dtypes (BYTES: numpy object arrays of bytes).
DATATYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (strings and objects: BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    for name, candidate in DATATYPES.items():
        if candidate == dtype:
            return name
    raise InferenceError(500, f"no V2 datatype for numpy dtype {dtype}")


class InferenceError(Exception):
    """A request the server refuses: ``status`` and a message for the V2 error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class Model(Protocol):
    name: str
    version: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def predict(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]: ...


class SklearnModel:
    """A scikit-learn estimator: input ``input-0``; outputs ``predict`` (and
    ``predict_proba``)."""

    platform = "scikit-learn"

    def __init__(self, estimator: Any, name: str, version: str = "1") -> None:
        self.estimator = estimator
        self.name = name
        self.version = version
        n_features = getattr(estimator, "n_features_in_", None)
        if n_features is None:
            raise InferenceError(
                500, f"{type(estimator).__name__} is not a fitted scikit-learn estimator"
            )
        self.n_features = int(n_features)
        self.input_dtype = np.dtype(np.float64)
        self.inputs: tuple[TensorSpec, ...] = (
            TensorSpec("input-0", "FP64", (-1, self.n_features)),
        )
        # The outputs' types come from one prediction on zeros.
        probe = np.zeros((1, self.n_features), dtype=self.input_dtype)
        outputs = [self._spec("predict", np.asarray(estimator.predict(probe)))]
        if hasattr(estimator, "predict_proba"):
            try:
                proba = np.asarray(estimator.predict_proba(probe))
            except (AttributeError, NotImplementedError):
                pass
            else:
                outputs.append(self._spec("predict_proba", proba))
        self.outputs = tuple(outputs)

    @staticmethod
    def _spec(name: str, probe: npt.NDArray[Any]) -> TensorSpec:
        return TensorSpec(name, datatype_of(probe.dtype), (-1, *probe.shape[1:]))

    def predict(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        x = inputs["input-0"]
        if x.ndim == 1 and self.n_features == x.shape[0]:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InferenceError(
                400,
                f"input 'input-0' has shape {list(x.shape)}; model {self.name} expects "
                f"[-1, {self.n_features}] (rows of {self.n_features} features)",
            )
        out: dict[str, npt.NDArray[Any]] = {}
        for name in outputs:
            method = getattr(self.estimator, name)
            result = np.asarray(method(x))
            if result.dtype.kind in "SU":
                result = result.astype(object)
            out[name] = result
        return out


class OnnxModel:
    """An ONNX graph run by onnxruntime on CPU."""

    platform = "onnxruntime_onnx"

    def __init__(self, path: Path, name: str, version: str = "1") -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.name = name
        self.version = version
        self.inputs = tuple(self._spec(i) for i in self.session.get_inputs())
        outputs = []
        for o in self.session.get_outputs():
            if o.type not in _ONNX_TYPES:
                log.warning(
                    "model %s: output %s of type %s is not a tensor; it is not served",
                    name,
                    o.name,
                    o.type,
                )
                continue
            outputs.append(self._spec(o))
        self.outputs = tuple(outputs)

    @staticmethod
    def _spec(node: Any) -> TensorSpec:
        if node.type not in _ONNX_TYPES:
            raise InferenceError(500, f"input {node.name} has type {node.type}, not a tensor")
        shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
        return TensorSpec(node.name, _ONNX_TYPES[node.type], shape)

    def predict(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, npt.NDArray[Any]]:
        feed = {}
        for spec in self.inputs:
            x = inputs[spec.name]
            if spec.datatype == "BYTES":
                x = np.array([v.decode() if isinstance(v, bytes) else v for v in x.flat]).reshape(
                    x.shape
                )
            feed[spec.name] = x
        try:
            results = self.session.run(list(outputs), feed)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InferenceError(400, f"model {self.name} could not run: {exc}") from exc
        out: dict[str, npt.NDArray[Any]] = {}
        for name, value in zip(outputs, results, strict=True):
            array = np.asarray(value)
            if array.dtype.kind in "SU":
                array = array.astype(object)
            out[name] = array
        return out


def load_model(path: Path, name: str | None = None, version: str = "1") -> Model:
    """Load the model at ``path`` (by its suffix). Raises InferenceError (500) with the fix
    when the file is missing or of an unknown kind."""
    if not path.is_file():
        raise InferenceError(500, f"no model file at {path}")
    model_name = name or path.stem
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxModel(path, model_name, version)
    if suffix in (".joblib", ".pkl", ".pickle"):
        import joblib

        return SklearnModel(joblib.load(path), model_name, version)
    raise InferenceError(
        500,
        f"cannot tell the kind of model {path}: name it *.joblib/*.pkl (scikit-learn, saved "
        "with joblib.dump) or *.onnx",
    )


# -- tensors in and out ------------------------------------------------------------------


def _input_array(
    spec: Mapping[str, Any], binary: bytes | None, expected: TensorSpec | None
) -> npt.NDArray[Any]:
    name = spec.get("name")
    datatype = spec.get("datatype")
    shape = spec.get("shape")
    if not isinstance(name, str):
        raise InferenceError(400, "an input has no 'name'")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InferenceError(
            400,
            f"input '{name}': datatype {datatype!r} is not one of {', '.join(DATATYPES)}",
        )
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InferenceError(400, f"input '{name}': 'shape' must be a list of sizes, got {shape!r}")
    count = int(np.prod(shape)) if shape else 1
    dtype = DATATYPES[datatype]
    if binary is not None:
        if datatype == "BYTES":
            items: list[bytes] = []
            pos = 0
            while pos < len(binary):
                (n,) = struct.unpack_from("<I", binary, pos)
                items.append(binary[pos + 4 : pos + 4 + n])
                pos += 4 + n
            array = np.array(items, dtype=object)
        else:
            if len(binary) != count * dtype.itemsize:
                raise InferenceError(
                    400,
                    f"input '{name}': {len(binary)} bytes of binary data for shape {shape} "
                    f"of {datatype} ({count * dtype.itemsize} expected)",
                )
            array = np.frombuffer(binary, dtype=dtype)
    else:
        if "data" not in spec:
            raise InferenceError(400, f"input '{name}' has no 'data' and no binary data")
        data = spec["data"]
        try:
            if datatype == "BYTES":
                flat = np.array(data, dtype=object).ravel()
                array = np.array(
                    [v.encode() if isinstance(v, str) else v for v in flat], dtype=object
                )
            else:
                array = np.array(data, dtype=dtype).ravel()
        except (TypeError, ValueError) as exc:
            raise InferenceError(400, f"input '{name}': data is not {datatype}: {exc}") from None
    if array.size != count:
        raise InferenceError(
            400, f"input '{name}': {array.size} values for shape {shape} ({count} expected)"
        )
    array = array.reshape(shape)
    if expected is not None and expected.datatype != datatype:
        if datatype == "BYTES" or expected.datatype == "BYTES":
            raise InferenceError(
                400, f"input '{name}' is {datatype}; the model expects {expected.datatype}"
            )
        # Numbers are converted (FP32 sent to an FP64 model is the common case).
        array = array.astype(DATATYPES[expected.datatype])
    return array


def _output_json(name: str, array: npt.NDArray[Any], binary: bool) -> tuple[dict[str, Any], bytes]:
    datatype = datatype_of(array.dtype)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
    if binary:
        if datatype == "BYTES":
            raw = b"".join(
                struct.pack("<I", len(b)) + b
                for b in (v if isinstance(v, bytes) else str(v).encode() for v in array.flat)
            )
        else:
            raw = np.ascontiguousarray(array).tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
        return entry, raw
    if datatype == "BYTES":
        entry["data"] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.flat]
    else:
        entry["data"] = array.ravel().tolist()
    return entry, b""


def infer(model: Model, body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
    """Run one V2 inference request; returns the response body and, when outputs are binary,
    the length of its JSON part. Raises InferenceError."""
    json_part = body if header_length is None else body[:header_length]
    try:
        request = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InferenceError(400, f"the request is not JSON: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InferenceError(400, "the request needs 'inputs', a list of tensors")
    expected = {s.name: s for s in model.inputs}
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 0 if header_length is None else header_length
    for spec in request["inputs"]:
        if not isinstance(spec, dict):
            raise InferenceError(400, "each input must be an object")
        size = (spec.get("parameters") or {}).get("binary_data_size")
        blob: bytes | None = None
        if size is not None:
            if header_length is None:
                raise InferenceError(
                    400,
                    f"input '{spec.get('name')}' has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header",
                )
            blob = body[offset : offset + int(size)]
            offset += int(size)
        array = _input_array(spec, blob, expected.get(str(spec.get("name"))))
        arrays[str(spec["name"])] = array
    missing = [n for n in expected if n not in arrays]
    unknown = [n for n in arrays if n not in expected]
    if missing or unknown:
        raise InferenceError(
            400,
            f"model {model.name} takes inputs {sorted(expected)}; "
            + (f"missing {missing}" if missing else f"unknown {unknown}"),
        )
    params = request.get("parameters") or {}
    all_binary = bool(params.get("binary_data_output", False))
    served = [o.name for o in model.outputs]
    requested = request.get("outputs")
    wanted: list[tuple[str, bool]] = []
    if requested:
        for o in requested:
            name = o.get("name") if isinstance(o, dict) else None
            if name not in served:
                raise InferenceError(
                    400, f"model {model.name} has no output {name!r}; its outputs: {served}"
                )
            as_binary = bool((o.get("parameters") or {}).get("binary_data", all_binary))
            wanted.append((str(name), as_binary))
    else:
        wanted = [(n, all_binary) for n in served]
    results = model.predict(arrays, [n for n, _ in wanted])
    outputs = []
    blobs = []
    for name, binary in wanted:
        entry, raw = _output_json(name, results[name], binary)
        outputs.append(entry)
        if binary:
            blobs.append(raw)
    response: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": outputs,
    }
    if "id" in request:
        response["id"] = request["id"]
    head = json.dumps(response).encode()
    if blobs:
        return head + b"".join(blobs), len(head)
    return head, None


# -- HTTP ---------------------------------------------------------------------------------


def create_app(model: Model) -> Any:
    """The Starlette app serving ``model`` (a single model)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def check(request: Request) -> JSONResponse | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != model.name:
            return error(404, f"no model named {name!r}; this server serves {model.name!r}")
        if version is not None and version != model.version:
            return error(404, f"model {name} has no version {version!r}; it has {model.version!r}")
        return None

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def server_metadata(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": "phalanx-modelserver",
                "version": __version__,
                "extensions": ["binary_tensor_data"],
            }
        )

    async def model_metadata(request: Request) -> JSONResponse:
        if (bad := check(request)) is not None:
            return bad
        return JSONResponse(
            {
                "name": model.name,
                "versions": [model.version],
                "platform": model.platform,
                "inputs": [s.to_json() for s in model.inputs],
                "outputs": [s.to_json() for s in model.outputs],
            }
        )

    async def model_ready(request: Request) -> JSONResponse:
        if (bad := check(request)) is not None:
            return bad
        return JSONResponse({"name": model.name, "ready": True})

    async def do_infer(request: Request) -> Response:
        if (bad := check(request)) is not None:
            return bad
        body = await request.body()
        header = request.headers.get("inference-header-content-length")
        try:
            length = int(header) if header is not None else None
            if length is not None and not 0 <= length <= len(body):
                raise InferenceError(
                    400, f"Inference-Header-Content-Length {length} is not within the body"
                )
            out, json_length = infer(model, body, length)
        except InferenceError as exc:
            return error(exc.status, str(exc))
        except ValueError as exc:
            return error(400, f"bad Inference-Header-Content-Length {header!r}: {exc}")
        if json_length is None:
            return Response(out, media_type="application/json")
        return Response(
            out,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length)},
        )

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error(404, f"no V2 endpoint at {request.method} {request.url.path}")

    base = "/v2/models/{name}"
    versioned = base + "/versions/{version}"
    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route(base, model_metadata),
        Route(versioned, model_metadata),
        Route(base + "/ready", model_ready),
        Route(versioned + "/ready", model_ready),
        Route(base + "/infer", do_infer, methods=["POST"]),
        Route(versioned + "/infer", do_infer, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found})


def serve(
    model: Model, host: str, port: int, *, on_listening: Any = None, log_level: str = "warning"
) -> None:
    """Serve ``model`` on ``host:port`` (0: a free port) until interrupted; calls
    ``on_listening(port)`` once the socket is bound."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = int(sock.getsockname()[1])
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    config = uvicorn.Config(create_app(model), log_level=log_level, access_log=False)
    server = uvicorn.Server(config)
    if on_listening is not None:
        on_listening(bound)
    server.run(sockets=[sock])

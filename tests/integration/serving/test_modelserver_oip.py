"""``phalanx serve-model`` against the official Triton HTTP client: a scikit-learn model and
an ONNX model, trained and exported here, served over the Open Inference Protocol V2; then
through the router."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _need(module: str) -> Any:
    try:
        return pytest.importorskip(module)
    except pytest.skip.Exception:
        if os.environ.get("PHALANX_REQUIRE_SERVE") == "1":
            pytest.fail(f"{module} is required here (the serve and serve-test extras)")
        raise


np = _need("numpy")
_need("sklearn")
_need("onnxruntime")
_need("skl2onnx")
httpclient = _need("tritonclient.http")
triton_utils = _need("tritonclient.utils")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_server(path: Path, *extra: str) -> Server:
    proc = subprocess.Popen(
        [sys.executable, "-m", "phalanx.cli", "serve-model", str(path), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving model" not in line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"serve-model did not start: {line!r} {err[-2000:]}")
    port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    return Server(proc, port)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    for stream in (server.proc.stdout, server.proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.fixture(scope="module")
def classifier(iris: tuple[Any, Any]) -> LogisticRegression:
    x, y = iris
    return LogisticRegression(max_iter=500).fit(x, y)


@pytest.fixture(scope="module")
def sklearn_server(
    tmp_path_factory: pytest.TempPathFactory, classifier: LogisticRegression
) -> Iterator[Server]:
    import joblib

    path = tmp_path_factory.mktemp("sk") / "iris.joblib"
    joblib.dump(classifier, path)
    server = start_server(path)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def onnx_server(
    tmp_path_factory: pytest.TempPathFactory, iris: tuple[Any, Any]
) -> Iterator[tuple[Server, LinearRegression]]:
    from skl2onnx import to_onnx

    x, _ = iris
    # Petal width from the other three measurements.
    regressor = LinearRegression().fit(x[:, :3], x[:, 3])
    onx = to_onnx(regressor, x[:1, :3].astype(np.float32), target_opset=17)
    path = tmp_path_factory.mktemp("onnx") / "petal.onnx"
    path.write_bytes(onx.SerializeToString())
    server = start_server(path, "--name", "petal", "--version", "3")
    yield server, regressor
    stop_server(server)


def test_health_and_metadata_of_a_scikit_learn_model(sklearn_server: Server) -> None:
    client = httpclient.InferenceServerClient(url=sklearn_server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    assert not client.is_model_ready("other")
    server_meta = client.get_server_metadata()
    assert server_meta["name"] == "phalanx-modelserver"
    meta = client.get_model_metadata("iris")
    assert meta["platform"] == "scikit-learn" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_scikit_learn_inference_matches_the_model(
    sklearn_server: Server,
    classifier: LogisticRegression,
    iris: tuple[Any, Any],
    binary: bool,
) -> None:
    x, _ = iris
    rows = x[::10]
    client = httpclient.InferenceServerClient(url=sklearn_server.url)
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=binary),
        httpclient.InferRequestedOutput("predict_proba", binary_data=binary),
    ]
    result = client.infer("iris", [tensor], outputs=outputs, request_id="r-7")
    assert result.get_response()["id"] == "r-7"
    np.testing.assert_array_equal(result.as_numpy("predict"), classifier.predict(rows))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), classifier.predict_proba(rows))
    # No outputs named: the client asks for all of them, in binary.
    default = client.infer("iris", [tensor])
    np.testing.assert_array_equal(default.as_numpy("predict"), classifier.predict(rows))
    client.close()


def test_onnx_inference_matches_the_model(
    onnx_server: tuple[Server, LinearRegression], iris: tuple[Any, Any]
) -> None:
    server, regressor = onnx_server
    x, _ = iris
    rows = x[:7, :3].astype(np.float32)
    client = httpclient.InferenceServerClient(url=server.url)
    assert client.is_model_ready("petal", "3")
    meta = client.get_model_metadata("petal", "3")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["variable"]
    tensor = httpclient.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("petal", [tensor], model_version="3")
    np.testing.assert_allclose(
        result.as_numpy("variable").ravel(), regressor.predict(rows), rtol=1e-4, atol=1e-4
    )
    client.close()


def test_errors_name_what_is_wrong(
    sklearn_server: Server, onnx_server: tuple[Server, LinearRegression]
) -> None:
    client = httpclient.InferenceServerClient(url=sklearn_server.url)
    wrong = httpclient.InferInput("input-0", [2, 3], "FP64")
    wrong.set_data_from_numpy(np.zeros((2, 3)))
    with pytest.raises(triton_utils.InferenceServerException, match=r"expects \[-1, 4\]"):
        client.infer("iris", [wrong])
    with pytest.raises(triton_utils.InferenceServerException, match="no model named 'nope'"):
        client.get_model_metadata("nope")
    named = httpclient.InferInput("features", [1, 4], "FP64")
    named.set_data_from_numpy(np.zeros((1, 4)))
    with pytest.raises(triton_utils.InferenceServerException, match="takes inputs"):
        client.infer("iris", [named])
    text = httpclient.InferInput("input-0", [1, 4], "BYTES")
    text.set_data_from_numpy(np.array([[b"a", b"b", b"c", b"d"]], dtype=object))
    with pytest.raises(triton_utils.InferenceServerException, match="expects FP64"):
        client.infer("iris", [text])
    client.close()
    onnx_client = httpclient.InferenceServerClient(url=onnx_server[0].url)
    with pytest.raises(triton_utils.InferenceServerException, match="no version '9'"):
        onnx_client.get_model_metadata("petal", "9")
    onnx_client.close()


def test_a_model_through_the_router(sklearn_server: Server, iris: tuple[Any, Any]) -> None:
    from phalanx.serving.endpoints import Endpoint, LoadSample, Route
    from phalanx.serving.router import RouterThread

    class Source:
        def routes(self) -> Sequence[Route]:
            return (
                Route(
                    "iris",
                    "/iris",
                    endpoints=(Endpoint(f"http://{sklearn_server.url}", "r1", "iris-0"),),
                ),
            )

    class Sink:
        def report(self, samples: Sequence[LoadSample]) -> None:
            pass

        def demand(self, service: str) -> None:
            pass

    thread = RouterThread(Source(), Sink(), rng=random.Random(1))
    port = thread.start()
    try:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}/iris")
        assert client.is_model_ready("iris")
        x, _ = iris
        tensor = httpclient.InferInput("input-0", [3, 4], "FP64")
        tensor.set_data_from_numpy(x[:3])
        assert list(client.infer("iris", [tensor]).as_numpy("predict")) == [0, 0, 0]
        client.close()
    finally:
        thread.stop()


def test_a_missing_or_unknown_model_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"x")
    for path, fragment in ((tmp_path / "none.onnx", "no model file"), (bad, "*.joblib/*.pkl")):
        done = subprocess.run(
            [sys.executable, "-m", "phalanx.cli", "serve-model", str(path), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1 and fragment in done.stderr

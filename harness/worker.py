"""TorchServe's worker path in-process: the archive's handler loaded and driven by TorchServe's own code.

`Worker` runs a request the way a TorchServe worker does, minus the socket: the archive is
extracted and loaded by TorchServe's own model loader (real Context, real metrics cache, the
archive's model-config.yaml), the request is encoded in the frontend's wire format and decoded
by TorchServe's codec (which parses JSON bodies), `Service.predict` calls the handler, and the
response frame is read back. `gpu_id` is what the frontend assigns a worker of a `deviceType: gpu`
model on a machine with GPUs; None is a CPU worker. The fuzz tests, the soak and the GPU check
(scripts/gpu_check.py) all drive the handler through it.
"""
import io
import json
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from configuration import model_config


@dataclass(frozen=True)
class Request:
    """One request as it travels over HTTP: its body and content type; `kind` says what it is."""

    kind: str
    body: bytes
    content_type: str = "application/octet-stream"


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class _Wire:
    """The bytes a socket would deliver, for TorchServe's codec."""

    def __init__(self, data: bytes):
        self.stream = io.BytesIO(data)

    def recv(self, size: int) -> bytes:
        return self.stream.read(size)


def _field(value: bytes) -> bytes:
    return struct.pack("!i", len(value)) + value


class Worker:
    """The archive's handler, loaded and driven by TorchServe's own worker code (see module doc)."""

    def __init__(self, archive: Path, workdir: Path, gpu_id: int | None = None):
        import ts
        from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
        from ts.model_loader import TsModelLoader

        with zipfile.ZipFile(archive) as mar:
            mar.extractall(workdir)
        manifest = json.loads((workdir / "MAR-INF" / "MANIFEST.json").read_text())
        settings = model_config(workdir / manifest["model"]["configFile"])
        # What a server's workers read when no metrics_config is set: our handler declares its own metrics.
        metrics = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
        metrics.initialize_cache()
        sys.path.insert(0, str(workdir))   # as a worker started in the model directory
        self.service = TsModelLoader().load("mnist", str(workdir), manifest["model"]["handler"], gpu_id=gpu_id,
                                            batch_size=settings["batchSize"], metrics_cache=metrics)
        self.service.set_cl_socket(None)

    @property
    def handler(self):
        """The handler instance TorchServe created (its device, model and settings)."""
        return self.service._entry_point.__self__

    def predict(self, batch: list[list[tuple[str, str, bytes]]], headers: list[dict] | None = None) -> list[Answer]:
        """One TorchServe batch; each request is its (name, content type, value) parameters and,
        optionally, the headers the frontend adds to it (/explanations sets {"explain": "True"})."""
        from ts.protocol.otf_message_handler import retrieve_msg

        frame = bytearray(b"I")
        for idx, parameters in enumerate(batch):
            frame += _field(str(idx).encode())   # request id
            for name, value in (headers[idx] if headers else {}).items():
                frame += _field(name.encode()) + _field(value.encode())
            frame += struct.pack("!i", -1)
            for name, content_type, value in parameters:
                frame += _field(name.encode()) + _field(content_type.encode()) + _field(value)
            frame += struct.pack("!i", -1)
        frame += struct.pack("!i", -1)
        _, requests = retrieve_msg(_Wire(bytes(frame)))
        return self._answers(self.service.predict(requests), len(batch))

    def answer(self, request: Request) -> Answer:
        return self.predict([[("body", request.content_type, request.body)]])[0]

    @staticmethod
    def _answers(response: bytes, count: int) -> list[Answer]:
        stream = io.BytesIO(response)

        def number() -> int:
            return struct.unpack("!i", stream.read(4))[0]

        def field() -> bytes:
            return stream.read(number())
        batch_status, _ = number(), field()
        answers = []
        for _ in range(count):
            field(), field()                    # request id, content type
            status, _ = number(), field()       # per-request status (the batch's on failure) and phrase
            for _ in range(2 * number()):       # response headers
                field()
            answers.append(Answer(status if batch_status == 200 else batch_status, field()))
        return answers

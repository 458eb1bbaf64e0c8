"""Run an encoder with ONNX Runtime on the CPU: the same features, often much faster.

PyTorch's eager CPU kernels for EfficientNet's depthwise convolutions are slow; ONNX
Runtime fuses them. The path from uint8 pixels to pooled features (normalisation and
backbone) is exported once per backbone and weights digest, cached under the user's
cache folder with its digest (:mod:`engine.encoding.sealed`), and reloaded on later runs
once the digest is checked. The hash layer is applied afterwards in numpy,
the same way for every runtime. Export writes to a temporary file and renames it, so a
killed export never leaves a broken model behind. The features match PyTorch's to about
1e-6 (tested), so an index built by either runtime serves the other.

Once a model is exported and this machine has measured ONNX Runtime to be its fastest
way of running the backbone, :func:`light_encoder` runs it without importing torch at
all: a one-off query of a new image then starts in well under a second.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from engine.encoding import chooser, sealed
from engine.encoding.backbones import (
    FEATURE_DIM,
    EncoderError,
    encoder_identity,
    file_digest,
    orthogonal_projection,
    weights_for,
)
from engine.errors import os_reason
from engine.paths import onnx_cache_dir
from engine.settings import INPUT_SIZE

#: Bump when the exported graph changes meaning (2: pooled features, not codes).
EXPORT_VERSION = 2


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    return onnx_cache_dir()


def model_path(backbone: str, weights_id: str, input_size: int) -> Path:
    """Where the exported model of this backbone and these weights is cached."""
    return cache_dir() / f"{backbone}-{weights_id}-{input_size}-e{EXPORT_VERSION}.onnx"


def export(module, input_size: int, path: Path, output: str = "features") -> None:
    """Export *module* (uint8 (N, S, S, 3) pixels in, one tensor out) to *path* atomically."""
    import torch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.part")
    except OSError as exc:
        why = f"the model cache {path.parent} cannot be written ({os_reason(exc)})"
        raise RuntimeError(why) from None
    example = torch.zeros((2, input_size, input_size, 3), dtype=torch.uint8)
    module = module.eval().cpu()
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=["pixels"],
                output_names=[output],
                dynamic_axes={"pixels": {0: "batch"}, output: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_encoder(encoder) -> Path:
    """Export a :class:`engine.encoding.torch_cnn.DeepImageEncoder`'s pixels-to-features path once."""
    import torch

    class PixelsToFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, pixels):
            return encoder.features(encoder.normalise(pixels))

    path = model_path(encoder.backbone_name, encoder.weights_id, encoder.input_size)
    if sealed.checked(path, [path], "ONNX model") is None:
        export(PixelsToFeatures(), encoder.input_size, path)
        sealed.write_seal(path, [path])
    return path


#: Sessions made in this process, by model file (path, change time, size, inode) and
#: threads: opening the same index or folder again (the app after a rebuild, a second
#: search object) reuses the loaded model instead of parsing and optimising it again
#: (0.1-0.3 s each). A session runs calls from several threads at once.
_SESSIONS: dict[tuple, Any] = {}  # onnxruntime.InferenceSession
_SESSIONS_LOCK = threading.Lock()


class OnnxFeatures:
    """Callable: uint8 (N, H, W, 3) pixels to float32 pooled features, with ONNX Runtime."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or chooser.threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: while one batch runs, the decode
        # threads prepare the next on the same cores. Measured end to end on 10,000 PNGs
        # (2 cores): 2 % faster at 224 px, 5 % at 192; the network alone is 3 % slower.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        st = os.stat(path)
        key = (os.fspath(path), st.st_mtime_ns, st.st_size, st.st_ino, options.intra_op_num_threads)
        with _SESSIONS_LOCK:
            session = _SESSIONS.pop(key, None)
            if session is None:
                session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            _SESSIONS[key] = session  # the most recent last
            while len(_SESSIONS) > 4:
                _SESSIONS.pop(next(iter(_SESSIONS)))
        self.session = session

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, np.uint8)})[0]


def project(features: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """The hash layer: codes = features @ projection.T, the same for every runtime.

    Not a BLAS call: OpenBLAS's threads spin-wait after one and steal the cores from the
    next CNN batch (measured: ONNX Runtime fell from 350 to 111 images/s)."""
    return np.einsum("ij,kj->ik", features, projection, optimize=False)


class OnnxEncoder:
    """The CNN through ONNX Runtime or OpenVINO alone, with the same interface and the
    same codes as :class:`engine.encoding.torch_cnn.DeepImageEncoder` on that path, without torch."""

    device_type = "cpu"

    def __init__(
        self,
        hash_dim: int,
        backbone: str,
        weights_id: str,
        path: Path,
        choice,
        input_size: int = INPUT_SIZE,
    ) -> None:
        self.backbone_name = backbone
        self.hash_dim = hash_dim
        self.weights_id = weights_id
        self.feature_dim = FEATURE_DIM[backbone]
        self.input_size = input_size
        self.projection = orthogonal_projection(self.feature_dim, hash_dim)
        self.choice = choice
        self.runtime, self.precision = choice.path.runtime, choice.path.precision
        self._onnx: OnnxFeatures | OpenVinoFeatures
        if self.runtime == "openvino":
            from engine.encoding.openvino_cnn import OpenVinoFeatures

            self._onnx = OpenVinoFeatures(path, self.precision, input_size)
        else:
            self._onnx = OnnxFeatures(path)

    @property
    def identity(self) -> dict[str, str | int]:
        return encoder_identity(self)

    def describe(self) -> str:
        runtime = "onnxruntime" if self.runtime == "onnx" else self.runtime
        return f"{self.backbone_name} (cpu, {self.precision}, {runtime})"

    def encode(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = chooser.CPU_MICRO_BATCH
        parts = [self._onnx(batch[i : i + step]) for i in range(0, len(batch), step)]
        feats = np.asarray(np.concatenate(parts) if len(parts) > 1 else parts[0], np.float32)
        return project(feats, self.projection), feats

    def encode_pixels(self, batch: np.ndarray) -> np.ndarray:
        return self.encode(batch)[0]


def light_encoder(
    hash_dim: int,
    backbone: str,
    weights,
    device: str,
    precision: str,
    runtime: str,
    input_size: int = INPUT_SIZE,
) -> OnnxEncoder | None:
    """An :class:`OnnxEncoder` when that is what :class:`engine.encoding.torch_cnn.DeepImageEncoder`
    would run here anyway (the CPU; ONNX Runtime or OpenVINO measured fastest on this
    machine for this precision, or asked for; the models already made), else None: then
    build the full encoder."""
    try:
        precision = chooser.from_env(precision, "LOOKALIKE_PRECISION", chooser.PRECISIONS)
        runtime = chooser.from_env(runtime, "LOOKALIKE_RUNTIME", chooser.RUNTIMES)
    except chooser.RuntimeChoiceError:
        return None
    if device not in ("auto", "cpu") or runtime == "torch":
        return None
    if device == "auto" and chooser.may_have_gpu():
        return None
    if not available():
        return None
    from engine.encoding import openvino_cnn

    try:
        path = weights_for(backbone, weights)
        weights_id = file_digest(path)
    except EncoderError:
        return None
    model = model_path(backbone, weights_id, input_size)
    if sealed.read_seal(model, [model])[0] is None:
        return None  # not made yet, or failing its check: the full encoder makes it again
    try:
        paths = chooser.candidates("cpu", runtime, precision, True, openvino_cnn.available())
    except chooser.RuntimeChoiceError:
        return None
    choice: chooser.PathChoice | None
    if len(paths) == 1 and runtime != "auto":
        choice = chooser.PathChoice(paths[0], "asked for")
    else:
        choice = chooser.remembered_best(backbone, input_size, paths)
    if choice is None or choice.path.runtime == "torch":
        return None
    if choice.path.precision == "int8":
        int8 = openvino_cnn.usable_int8(model)
        if int8 is None:
            return None
        model = int8
    return OnnxEncoder(hash_dim, backbone, weights_id, model, choice, input_size)

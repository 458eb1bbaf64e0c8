"""Run an encoder with OpenVINO on the CPU: fp32, bf16, and an int8 model made here.

OpenVINO reads the ONNX model :mod:`engine.encoding.onnx_cnn` exports. Measured on 2 Zen 5
cores (CNN alone, batches of 8): EfficientNet-Lite0 ran at 348 images/s with ONNX Runtime
fp32, 703 with OpenVINO's bf16 hint, 932 with the int8 model below. The chooser in
:mod:`engine.encoding.chooser` still decides by measuring on each machine.

**int8, made once per machine.** NNCF quantises the model with a few dozen calibration
pictures generated here (:func:`calibration_pictures`: gradients, shapes, textures,
colour and grey), per-channel weights and per-tensor activations, and with the first
layers left in float (:data:`KEEP_FLOAT`: EfficientNet-Lite0's stem and first two
blocks, which work at 112 and 56 pixels and cost 0.4-0.9 % of feature cosine each in
int8, while later blocks cost under 0.05 % each). The model is cached beside the ONNX
export (one for each kind of CPU, :data:`INT8_FLAGS`), and used only if its features
stay within :data:`GUARD` mean cosine of fp32's on a check set of other generated
pictures; otherwise the refusal is cached with its
reason, and the chooser says why it skipped int8. Weights are tried in full 8-bit range
first, then in 7 bits (:data:`WEIGHT_BITS`): a CPU without VNNI (AVX2 only) adds int8
products in pairs into 16-bit sums that saturate with full-range weights. The model's seal
(:mod:`engine.encoding.sealed`) holds its digest, the measured cosine and the digest of
the ONNX model it was made from: the guard's verdict belongs to those bytes, and a model
or a refusal made from other bytes is made again.

OpenVINO runs bf16 by default on a CPU with bf16 units, so fp32 is asked for explicitly.
A static batch of :data:`engine.encoding.chooser.CPU_MICRO_BATCH` is about 5 % faster than a
dynamic one; a shorter last batch is padded.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from engine.encoding import chooser, sealed

#: Bump when the quantisation changes: the cached int8 models of before are not used.
QUANT_VERSION = 1
#: Mean feature cosine to fp32 an int8 model must reach on the check set.
GUARD = 0.99
#: Layers kept in float in the int8 model, by backbone (node-name patterns of the export).
KEEP_FLOAT = {
    "efficientnet-lite0": [r".*_conv_stem/.*", r".*_blocks\.0/.*", r".*_blocks\.1/.*"],
    "resnet50": [r"/features/body/0/.*", r"/features/body/1/.*", r"/features/body/4/.*"],
}
CALIBRATION = 64
CHECK = 32
#: Weight ranges tried in turn, the first whose model passes the guard kept: 8 bits, then
#: 7 (NNCF's overflow fix on every layer, not only the first). On 2 Zen 3 cores (AVX2, no
#: VNNI) 8-bit weights reached mean cosine 0.984 to fp32, 7-bit ones 0.991, and ran
#: 1.3-1.6x as fast as fp32; with VNNI 8 bits pass, and stay the more exact.
WEIGHT_BITS = (8, 7)


def load_openvino():
    """OpenVINO, imported without its model-conversion tools (``openvino.tools.ovc``,
    which lookalike does not use: it reads ONNX models). Importing those tools sends a
    usage event (openvino_telemetry, which takes consent for granted where no consent
    file exists) from a process forked off a thread. lookalike sends nothing; and a fork
    while another thread is inside a threaded OpenBLAS call leaves that call waiting
    forever (OpenBLAS stops its threads at a fork): an index run hung so, in the QR of
    the hash layer, about once in a dozen starts. Raises ImportError if OpenVINO is not
    installed."""
    block = "openvino" not in sys.modules and "openvino.tools.ovc" not in sys.modules
    if block:  # openvino's __init__ imports the tools inside a try that allows their absence
        sys.modules["openvino.tools.ovc"] = None  # type: ignore[assignment]
    try:
        import openvino
    finally:
        if block and sys.modules.get("openvino.tools.ovc", ...) is None:
            del sys.modules["openvino.tools.ovc"]
    return openvino


def available() -> bool:
    try:
        load_openvino()
    except ImportError:
        return False
    return True


#: The instructions int8 runs on: a model's guard verdict holds for them only (without
#: VNNI full-range weights saturate), so a cache folder that machines of other kinds
#: share (a home folder on a cluster) keeps a model for each.
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def int8_path(onnx_path: Path) -> Path:
    """Where the int8 model of an exported ONNX model is cached for this CPU's kind
    (OpenVINO IR)."""
    flags = chooser.cpu_description()[1]
    kind = "-".join(f.replace("_", "") for f in INT8_FLAGS if f in flags) or "other"
    return onnx_path.with_name(f"{onnx_path.stem}-int8-q{QUANT_VERSION}-{kind}.xml")


def calibration_pictures(n: int, size: int, seed: int) -> np.ndarray:
    """*n* uint8 (size, size, 3) pictures made from nothing: a gradient, shapes and lines
    in colour, some textured, some grey, some dark or light."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.RandomState(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        top, bottom = rng.randint(0, 256, 3), rng.randint(0, 256, 3)
        ramp = np.linspace(0, 1, size)[:, None, None]
        base = (top * (1 - ramp) + bottom * ramp).repeat(size, axis=1)
        if i % 4 == 1:  # a texture
            base = base + rng.normal(0, rng.uniform(5, 40), base.shape)
        im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        for _ in range(rng.randint(3, 20)):
            x0, y0 = rng.randint(0, size, 2)
            x1, y1 = x0 + rng.randint(8, size // 2), y0 + rng.randint(8, size // 2)
            colour = tuple(int(c) for c in rng.randint(0, 256, 3))
            kind = rng.randint(3)
            if kind == 0:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            elif kind == 1:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            else:
                draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.randint(1, 10)))
        if i % 5 == 2:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
        if i % 3 == 0:
            im = im.convert("L").convert("RGB")
        out[i] = np.asarray(im)
    return out


class OpenVinoFeatures:
    """Callable: uint8 (N, H, W, 3) pixels to float32 pooled features, with OpenVINO in
    *precision* (``fp32``, ``bf16``, or ``int8`` for a quantised model)."""

    def __init__(self, model: Path, precision: str, input_size: int, threads: int | None = None):
        ov = load_openvino()

        core = ov.Core()
        graph = core.read_model(str(model))
        self.batch = chooser.CPU_MICRO_BATCH
        graph.reshape({graph.inputs[0]: [self.batch, input_size, input_size, 3]})
        # int8 layers run in int8 whatever the hint; the layers kept in float run in bf16
        # where the CPU has bf16 units (482 against 311 images/s here, cosine unchanged)
        fast = chooser.cpu_has_fast_bf16()
        hint = "bf16" if precision == "bf16" or (precision == "int8" and fast) else "f32"
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads or chooser.threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(graph, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.size = input_size

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, np.uint8)
        out = []
        for lo in range(0, len(pixels), self.batch):
            part = pixels[lo : lo + self.batch]
            n = len(part)
            if n < self.batch:
                pad = np.zeros((self.batch - n, *part.shape[1:]), np.uint8)
                part = np.concatenate([part, pad])
            # the request reads the batch where it lies: copying it in (1.2 MB a call)
            # was 0.6 s of the CNN thread's 23 in indexing 10,000 pictures
            result = self.request.infer({0: part}, share_inputs=True)
            out.append(np.asarray(result[0], np.float32)[:n].copy())
        return np.concatenate(out) if len(out) > 1 else out[0]


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1)))


def _files(path: Path) -> list[Path]:
    return [path, path.with_suffix(".bin")]


def _source_digest(onnx_path: Path) -> str | None:
    """The digest of the ONNX model an int8 model is made from (from its seal)."""
    seal = sealed.read_seal(onnx_path, [onnx_path])[0]
    return seal["files"].get(onnx_path.name) if seal else None


def usable_int8(onnx_path: Path) -> Path | None:
    """The cached int8 model of *onnx_path* if it passes its checks: its files match
    their seal, and the seal says it was made from this very ONNX model (the guard's
    result belongs to those bytes); else None."""
    path = int8_path(onnx_path)
    seal = sealed.checked(path, _files(path), "int8 model")
    if seal is None:
        return None
    source = _source_digest(onnx_path)
    if source is None or seal.get("from") != source:
        sealed.remove(path, _files(path))
        return None
    return path


def _refusal(onnx_path: Path) -> str | None:
    """Why the int8 model of this ONNX model was refused before, if it was (a refusal
    recorded for other ONNX bytes is dropped: the model is quantised again)."""
    refused = int8_path(onnx_path).with_suffix(".refused")
    try:
        with open(refused, "rb") as fh:
            raw = fh.read(sealed.SEAL_MAX + 1)
        got = json.loads(raw) if len(raw) <= sealed.SEAL_MAX else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError):
        got = None
    if (
        isinstance(got, dict)
        and isinstance(got.get("why"), str)
        and got.get("from") == _source_digest(onnx_path)
        and got.get("weight_bits") == list(WEIGHT_BITS)  # refused before 7 bits were tried
    ):
        return got["why"][:300]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(refused)
    return None


def int8_model(onnx_path: Path, backbone: str, input_size: int) -> Path:
    """The int8 model of *onnx_path*: made and checked once (in a child process: NNCF
    writes progress bars to the terminal, and is only needed here), then cached with its
    seal. Raises RuntimeError with the reason when it cannot be made or fails the guard
    (the refusal is cached too, so it is not made again on every run)."""
    import subprocess

    path = usable_int8(onnx_path)
    if path is not None:
        return path
    why = _refusal(onnx_path)
    if why is None:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "engine.encoding.openvino_cnn", str(onnx_path), backbone,
                 str(input_size)],
                capture_output=True,
                text=True,
                timeout=600,
                # lookalike works offline and sends nothing: NNCF's telemetry stays off
                env={**os.environ, "NNCF_CI": "1"},
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"cannot make the int8 model: {exc}") from None
        path = usable_int8(onnx_path)
        if path is not None:
            return path
        why = _refusal(onnx_path)
        if why is None:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise RuntimeError(f"cannot make the int8 model: {last}")
    raise RuntimeError(why)


def make_int8(
    onnx_path: Path,
    backbone: str,
    input_size: int,
    keep_float: list[str] | None = None,
    per_tensor: bool = True,
    path: Path | None = None,
    guard: float = GUARD,
    weight_bits: tuple[int, ...] = WEIGHT_BITS,
) -> None:
    """Quantise, check against *guard*, and cache the model with its seal, or the
    refusal (at *path*, default :func:`int8_path`). *keep_float*, *per_tensor* and
    *weight_bits* are the recipe (default: :data:`KEEP_FLOAT` for the backbone, per-tensor
    activations, each of :data:`WEIGHT_BITS` in turn until one passes)."""
    path = path or int8_path(onnx_path)
    refused = path.with_suffix(".refused")
    ov = load_openvino()  # before NNCF imports it
    keep = KEEP_FLOAT.get(backbone, []) if keep_float is None else keep_float
    source = _source_digest(onnx_path)
    check = calibration_pictures(CHECK, input_size, seed=2)
    exact = OpenVinoFeatures(onnx_path, "fp32", input_size)(check)
    path.parent.mkdir(parents=True, exist_ok=True)
    got = []
    for bits in weight_bits:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, suffix=".part"))
        try:
            quantized = _quantize(ov, onnx_path, input_size, keep, per_tensor, bits)
            ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
            approx = OpenVinoFeatures(tmp / "model.xml", "int8", input_size)(check)
            cosine = _mean_cosine(exact, approx)
            if cosine >= guard:
                sealed.remove(path, _files(path))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(refused)
                os.replace(tmp / "model.bin", path.with_suffix(".bin"))
                os.replace(tmp / "model.xml", path)
                seal = {"cosine": round(cosine, 5), "guard": guard, "weight_bits": bits}
                sealed.write_seal(path, _files(path), **seal, **{"from": source})
                return
            got.append(f"{cosine:.3f} with {bits}-bit weights")
        finally:
            for f in tmp.glob("*"):
                f.unlink()
            tmp.rmdir()
    why = f"int8 features at mean cosine {', '.join(got)} to fp32 (the guard is {guard})"
    record = {"why": why, "from": source, "weight_bits": list(weight_bits)}
    sealed.write_whole(refused, (json.dumps(record) + "\n").encode())
    raise RuntimeError(why)


def _quantize(ov, onnx_path: Path, input_size: int, keep: list[str], per_tensor: bool, bits: int):
    """The model at *onnx_path* quantised by NNCF on the calibration pictures, weights in
    *bits* (8 or 7), read afresh for each recipe."""
    import warnings

    import nncf

    model = ov.Core().read_model(str(onnx_path))
    model.reshape({model.inputs[0]: [chooser.CPU_MICRO_BATCH, input_size, input_size, 3]})
    calib = calibration_pictures(CALIBRATION, input_size, seed=1)
    step = chooser.CPU_MICRO_BATCH
    batches = [calib[i : i + step] for i in range(0, len(calib), step)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            OverflowFix,
            QuantizationParameters,
        )

        return nncf.quantize(
            model,
            nncf.Dataset(batches),
            subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(patterns=keep, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(
                overflow_fix=OverflowFix.ENABLE if bits == 7 else OverflowFix.FIRST_LAYER,
                activations_quantization_params=QuantizationParameters(per_channel=False)
                if per_tensor
                else None,
            ),
        )


if __name__ == "__main__":  # python -m engine.encoding.openvino_cnn MODEL.onnx BACKBONE SIZE
    try:
        make_int8(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
    except RuntimeError:
        sys.exit(1)  # the refusal is cached, with its reason

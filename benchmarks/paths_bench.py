"""What each way of running the CNN does to the features: mean cosine to ONNX Runtime
fp32, and precision@10 by class (centred features, exact) on Fashion-MNIST and on the
varied clip-art set. The quality guard for a path taken by default: cosine ≥ 0.99 and
precision@10 within 0.005 of fp32 on both sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.data import DATA, ensure_clipart, sized
from benchmarks.report import table

PER_CLASS_FASHION = sized(300, 20)


def _pictures(root: Path, per_class: int | None) -> tuple[np.ndarray, np.ndarray]:
    from engine.images import read_image, square_pixels

    files, labels = [], []
    for i, cls in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        mine = sorted(cls.glob("*.png"))
        mine = mine[:per_class] if per_class else mine
        files += mine
        labels += [i] * len(mine)
    px = np.stack([square_pixels(read_image(f, 224)[0], 224) for f in files])
    return px, np.array(labels)


def _precision_at_10(feats: np.ndarray, labels: np.ndarray) -> float:
    x = feats - feats.mean(axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    hits = []
    for lo in range(0, len(x), 1024):
        s = x[lo : lo + 1024] @ x.T
        s[np.arange(len(s)), np.arange(lo, lo + len(s))] = -np.inf
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        hits.append((labels[top] == labels[lo : lo + len(s), None]).mean(axis=1))
    return float(np.concatenate(hits).mean())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.mean(np.sum(a * b, axis=1)))


def bench_paths(rep) -> None:
    from engine.encoding import onnx_cnn, openvino_cnn, sealed
    from engine.encoding.chooser import cpu_has_fast_bf16
    from engine.encoding.torch_cnn import DeepImageEncoder

    enc = DeepImageEncoder(hash_dim=128, backbone="efficientnet-lite0", device="cpu")
    onnx = onnx_cnn.export_encoder(enc)
    runs = {"ONNX Runtime fp32": onnx_cnn.OnnxFeatures(onnx)}
    runs["OpenVINO fp32"] = openvino_cnn.OpenVinoFeatures(onnx, "fp32", 224)
    if cpu_has_fast_bf16():
        runs["OpenVINO bf16"] = openvino_cnn.OpenVinoFeatures(onnx, "bf16", 224)
    try:
        int8 = openvino_cnn.int8_model(onnx, "efficientnet-lite0", 224)
        runs["OpenVINO int8"] = openvino_cnn.OpenVinoFeatures(int8, "int8", 224)
        seal = sealed.read_seal(int8, openvino_cnn._files(int8))[0] or {}
        bits = f"{seal.get('weight_bits', '?')}-bit weights here"
    except RuntimeError:  # refused by its guard on this CPU: made apart, to say how far off
        import tempfile

        int8 = Path(tempfile.mkdtemp(prefix="lookalike-int8-")) / "model.xml"
        openvino_cnn.make_int8(onnx, "efficientnet-lite0", 224, path=int8, guard=0.0)
        runs["OpenVINO int8 (refused here)"] = openvino_cnn.OpenVinoFeatures(int8, "int8", 224)
        bits = "8-bit weights, refused here"
    sets = {
        "Fashion-MNIST": _pictures(DATA / "fashion-test", PER_CLASS_FASHION),
        "clip-art": _pictures(ensure_clipart(), None),
    }
    got: dict[str, dict[str, np.ndarray]] = {name: {} for name in runs}
    for name, run in runs.items():
        for label, (px, _) in sets.items():
            got[name][label] = np.concatenate([run(px[i : i + 8]) for i in range(0, len(px), 8)])
    ref = got["ONNX Runtime fp32"]
    rows = []
    for name in runs:
        cos = [_cosine(ref[s], got[name][s]) for s in sets]
        p10 = [_precision_at_10(got[name][s], sets[s][1]) for s in sets]
        rows.append(
            [name, " / ".join(f"{c:.4f}" for c in cos), " / ".join(f"{p:.3f}" for p in p10)]
        )
    sizes = ", ".join(f"{s} {len(v[0]):,}" for s, v in sets.items())
    body = table(
        ["path", "feature cosine to fp32 (FMNIST / clip-art, mean)", "precision@10 by class"],
        rows,
    )
    body += (
        f"\n\nEfficientNet-Lite0 at 224 px; pictures: {sizes}. The int8 model is the one"
        " lookalike makes on this machine (generated calibration pictures; stem and blocks"
        f" 0-1 in float; per-tensor activations; {bits}: 8 bits, or 7 where 8 fail the"
        " guard). Guard for a default path: cosine ≥ 0.99,"
        " precision@10 within 0.005 of fp32."
    )
    rep.section(
        "Encoder paths: what they do to the features", body, "python -m benchmarks.run --only paths"
    )

"""Backbones, weights loading (never unpickling code), determinism, precision."""

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.encoding.backbones import torch_cache_dir
from engine.encoding.torch_cnn import (
    DeepImageEncoder,
    EncoderError,
    load_state_dict,
    resolve_backbone,
)


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (n, 7, 7, 3)).astype(np.uint8)
    return np.repeat(np.repeat(small, 32, axis=1), 32, axis=2)  # 224 x 224 blocks


def test_efficientnet_codes_are_deterministic():
    a = DeepImageEncoder(hash_dim=32, backbone="efficientnet-lite0", device="cpu", precision="fp32")
    b = DeepImageEncoder(hash_dim=32, backbone="efficientnet-lite0", device="cpu", precision="fp32")
    x = _pixels(3)
    ca, cb = a.encode_pixels(x), b.encode_pixels(x)
    assert ca.shape == (3, 32) and ca.dtype == np.float32
    np.testing.assert_array_equal(ca, cb)
    assert not np.allclose(ca[0], ca[1])  # different images, different codes
    assert a.identity["backbone"] == "efficientnet-lite0" and len(a.identity["weights_id"]) == 16


def test_bf16_codes_stay_close_to_fp32():
    fp32 = DeepImageEncoder(
        hash_dim=64, backbone="efficientnet-lite0", device="cpu", precision="fp32"
    )
    bf16 = DeepImageEncoder(
        hash_dim=64, backbone="efficientnet-lite0", device="cpu", precision="bf16"
    )
    x = _pixels(2, seed=3)
    c32, c16 = fp32.encode_pixels(x), bf16.encode_pixels(x)
    cos = (c32 * c16).sum(1) / np.linalg.norm(c32, axis=1) / np.linalg.norm(c16, axis=1)
    assert (cos > 0.98).all(), cos


def test_resnet50_from_a_saved_state_dict(tmp_path: Path, monkeypatch):
    from torchvision.models import resnet50

    torch.manual_seed(0)
    path = tmp_path / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    enc = DeepImageEncoder(
        hash_dim=16,
        backbone="resnet50",
        weights=path,
        device="cpu",
        precision="fp32",
        runtime="torch",
    )
    codes = enc.encode_pixels(_pixels(2))
    assert codes.shape == (2, 16) and np.isfinite(codes).all()
    assert enc.feature_dim == 2048

    # auto picks ResNet-50 once torchvision's cache holds its file, never downloading;
    # the cache is found where torch itself looks ($TORCH_HOME/hub)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert str(torch_cache_dir()) == os.path.join(torch.hub.get_dir(), "checkpoints")
    assert resolve_backbone("auto") == "efficientnet-lite0"
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth").write_bytes(path.read_bytes())
    assert resolve_backbone("auto") == "resnet50"
    assert DeepImageEncoder(hash_dim=16, device="cpu", runtime="torch").backbone_name == "resnet50"


class _Evil:
    def __reduce__(self):
        return (exec, ("raise SystemExit('code ran')",))


def test_weights_file_with_code_is_refused(tmp_path: Path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"layer": _Evil()}, fh)
    with pytest.raises(EncoderError, match="cannot load weights"):
        load_state_dict(path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "small.pth")
    with pytest.raises(EncoderError, match="do not fit ResNet-50"):
        DeepImageEncoder(backbone="resnet50", weights=tmp_path / "small.pth", device="cpu")


def test_bad_settings_are_clear():
    with pytest.raises(EncoderError, match="unknown backbone"):
        resolve_backbone("vgg")
    with pytest.raises(EncoderError, match="hash_dim"):
        DeepImageEncoder(hash_dim=4, backbone="efficientnet-lite0")
    with pytest.raises(EncoderError, match="exceeds"):
        DeepImageEncoder(hash_dim=4096, backbone="efficientnet-lite0", device="cpu")


def test_onnx_runtime_gives_the_same_codes(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    onnx = DeepImageEncoder(
        hash_dim=64, backbone="efficientnet-lite0", device="cpu", runtime="onnx"
    )
    eager = DeepImageEncoder(
        hash_dim=64, backbone="efficientnet-lite0", device="cpu", precision="fp32", runtime="torch"
    )
    assert onnx.runtime == "onnx" and "onnxruntime" in onnx.describe()
    assert list((tmp_path / "lookalike" / "onnx").glob("*.onnx"))  # exported once, cached
    x = _pixels(3, seed=5)
    np.testing.assert_allclose(onnx.encode_pixels(x), eager.encode_pixels(x), atol=1e-4)
    again = DeepImageEncoder(
        hash_dim=64, backbone="efficientnet-lite0", device="cpu", precision="fp32", runtime="onnx"
    )
    np.testing.assert_array_equal(again.encode_pixels(x), onnx.encode_pixels(x))


def test_fastest_path_is_chosen_by_measurement_and_remembered(tmp_path: Path, monkeypatch):
    from engine.encoding import chooser as rt

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    paths = [rt.EncoderPath("onnx", "fp32"), rt.EncoderPath("torch", "fp32")]
    speeds = {"onnxruntime fp32": 250.0, "torch fp32": 300.0}
    measured = []

    def rate_of(path):
        measured.append(path.name)
        return speeds[path.name]

    first = rt.choose(paths, rate_of, "key")
    assert first.path == rt.EncoderPath("torch", "fp32") and "300 images/s" in first.why
    again = rt.choose(paths, rate_of, "key")  # remembered: nothing measured again
    assert again.path == first.path
    assert measured == ["onnxruntime fp32", "torch fp32"] * rt.ROUNDS  # rounds alternate
    # a path far behind after the first round is not timed again, and one alone no more
    speeds["onnxruntime fp32"] = 300.0 / rt.BEHIND - 1
    measured.clear()
    assert rt.choose(paths, rate_of, "far").path.runtime == "torch"
    assert measured == ["onnxruntime fp32", "torch fp32"]

    def broken(path):
        if path.runtime == "torch":
            raise RuntimeError("no kernels")
        return 50.0

    assert rt.choose(paths, broken, "other").path.runtime == "onnx"  # a failing path is dropped
    assert rt.choose(paths[:1], broken, "k", asked=True).why == "asked for"


def test_bf16_is_a_candidate_only_where_the_cpu_has_it(monkeypatch):
    from engine.encoding import chooser as rt

    monkeypatch.setattr(rt, "cpu_description", lambda: ("some cpu", frozenset({"avx2"})))
    names = [p.name for p in rt.candidates("cpu", "auto", "auto", True)]
    assert names == ["onnxruntime fp32", "torch fp32"]
    monkeypatch.setattr(rt, "cpu_description", lambda: ("cpu", frozenset({"avx512_bf16"})))
    assert "torch bf16" in [p.name for p in rt.candidates("cpu", "auto", "auto", True)]
    assert [p.name for p in rt.candidates("cpu", "auto", "fp32", True)] == [
        "onnxruntime fp32",
        "torch fp32",
    ]
    assert [p.name for p in rt.candidates("cuda", "auto", "auto", True)] == ["torch bf16"]
    with pytest.raises(rt.RuntimeChoiceError, match="fp32 only"):
        rt.candidates("cpu", "onnx", "bf16", True)


def test_encoder_reports_its_choice(int8_made, exported, monkeypatch, tmp_path: Path):
    """A first run on a machine times every path (the models made already: quantising
    on a first run has its test in test_sandbox) and says why it chose."""
    import shutil

    shutil.copytree(exported.parent.parent, tmp_path / "lookalike")
    _write_back(int8_made, tmp_path / "lookalike" / exported.parent.name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LOOKALIKE_PRECISION", raising=False)
    enc = DeepImageEncoder(hash_dim=16, backbone="efficientnet-lite0", device="cpu")
    assert enc.choice.path.runtime == enc.runtime and enc.choice.path.precision == enc.precision
    assert "fastest measured on this CPU" in enc.choice.why
    assert enc.identity["precision"] == enc.precision
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "torch")
    monkeypatch.setenv("LOOKALIKE_PRECISION", "fp32")
    forced = DeepImageEncoder(hash_dim=16, backbone="efficientnet-lite0", device="cpu")
    assert (forced.runtime, forced.precision) == ("torch", "fp32")


def test_an_index_keeps_its_precision(tmp_path: Path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from engine import ImageSimilaritySearch, IndexMismatch
    from support import make_image

    root = tmp_path / "imgs"
    for i in range(3):
        make_image(root / f"{i}.png", i)
    with ImageSimilaritySearch(root, precision="fp32") as search:
        search.index()
        assert search.store.get_meta()["precision"] == "fp32"
    with pytest.raises(IndexMismatch, match="precision fp32 .asked bf16.*--rebuild"):
        ImageSimilaritySearch(root, precision="bf16")


def test_the_light_onnx_encoder_gives_the_same_codes(monkeypatch):
    from engine.encoding.onnx_cnn import light_encoder

    full = DeepImageEncoder(
        hash_dim=32, backbone="efficientnet-lite0", device="cpu", runtime="onnx"
    )
    light = light_encoder(32, "efficientnet-lite0", None, "cpu", "fp32", "onnx")
    assert light is not None and light.identity == full.identity
    x = _pixels(3, seed=9)
    np.testing.assert_array_equal(light.encode_pixels(x), full.encode_pixels(x))
    # not where the full encoder would choose otherwise: a GPU, torch asked for; bf16
    # only through OpenVINO measured fastest here
    bf16 = light_encoder(32, "efficientnet-lite0", None, "cpu", "bf16", "auto")
    assert bf16 is None or (bf16.runtime, bf16.precision) == ("openvino", "bf16")
    assert light_encoder(32, "efficientnet-lite0", None, "cpu", "fp32", "torch") is None
    assert light_encoder(32, "efficientnet-lite0", None, "cuda", "fp32", "auto") is None


def test_openvino_paths_are_candidates_only_where_it_is_installed(monkeypatch):
    from engine.encoding import chooser as rt

    monkeypatch.setattr(rt, "cpu_description", lambda: ("some cpu", frozenset({"avx2"})))
    names = [p.name for p in rt.candidates("cpu", "auto", "auto", True, True)]
    assert names == ["onnxruntime fp32", "openvino fp32", "openvino int8", "torch fp32"]
    assert "openvino" not in " ".join(p.name for p in rt.candidates("cpu", "auto", "auto", True))
    monkeypatch.setattr(rt, "cpu_description", lambda: ("cpu", frozenset({"avx512_bf16"})))
    assert "openvino bf16" in [p.name for p in rt.candidates("cpu", "auto", "auto", True, True)]
    assert [p.name for p in rt.candidates("cpu", "auto", "int8", True, True)] == ["openvino int8"]
    with pytest.raises(rt.RuntimeChoiceError, match="openvino is not installed"):
        rt.candidates("cpu", "auto", "int8", True, False)
    with pytest.raises(rt.RuntimeChoiceError, match="OpenVINO only"):
        rt.candidates("cpu", "torch", "int8", True, True)
    with pytest.raises(rt.RuntimeChoiceError, match="GPU"):
        rt.candidates("cuda", "auto", "int8", True, True)


def test_openvino_is_loaded_without_sending_anything_or_forking():
    """OpenVINO's conversion tools send a usage event from a forked process when
    imported; lookalike loads OpenVINO without them (a fork beside a threaded OpenBLAS
    call hangs it), and the runtime still works."""
    import subprocess
    import sys

    code = (
        "import os, sys, time\n"
        "forks = []\n"
        "os.register_at_fork(before=lambda: forks.append(1))\n"
        "from engine.encoding.openvino_cnn import load_openvino\n"
        "ov = load_openvino()\n"
        "assert ov.Core().available_devices\n"
        "time.sleep(1.5)\n"
        "print(len(forks), 'openvino_telemetry' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]


def test_the_chooser_says_why_it_skipped_a_path():
    from engine.encoding import chooser as rt

    paths = [rt.EncoderPath("onnx", "fp32"), rt.EncoderPath("openvino", "int8")]

    def rate(path):
        if path.precision == "int8":
            raise RuntimeError("int8 features at mean cosine 0.978 to fp32")
        return 100.0

    choice = rt.choose(paths, rate, "skip-test")
    assert choice.path.name == "onnxruntime fp32"
    assert "skipped openvino int8: int8 features at mean cosine 0.978" in choice.why


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The exported ONNX model of EfficientNet-Lite0 at 224 px, in a cache of its own."""
    import os

    from engine.encoding import onnx_cnn

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        # one runtime asked for: nothing to time, this fixture is about the exported model
        enc = DeepImageEncoder(
            hash_dim=16, backbone="efficientnet-lite0", device="cpu", runtime="onnx"
        )
        yield onnx_cnn.export_encoder(enc)
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def int8_made(exported) -> dict[str, bytes]:
    """The int8 model of :func:`exported`, quantised once beside it (with the lower guard
    the int8 tests use: how close int8 comes to fp32 depends on the CPU's int8
    instructions, 0.984 on a Zen 2 without VNNI), as its files' names and bytes: a test
    that needs it made again writes them back rather than quantising again (seconds)."""
    from engine.encoding import openvino_cnn as ov
    from engine.encoding import sealed

    ov.make_int8(exported, "efficientnet-lite0", 224, guard=0.9)
    int8 = ov.int8_path(exported)
    files = [*ov._files(int8), sealed.seal_path(int8)]
    return {f.name: f.read_bytes() for f in files}


def _write_back(made: dict[str, bytes], folder: Path) -> None:
    for name, data in made.items():
        (folder / name).write_bytes(data)


def test_an_int8_model_quantised_everywhere_is_refused(exported, tmp_path: Path):
    from engine.encoding import openvino_cnn as ov

    bad = tmp_path / "everywhere.xml"
    # at 112 px (the network takes any size): both recipes quantised in a quarter the time
    with pytest.raises(RuntimeError) as refused:
        ov.make_int8(exported, "efficientnet-lite0", 112, keep_float=[], per_tensor=False, path=bad)
    # both weight ranges were tried, and the refusal says how far each came (a refusal
    # from before the 7-bit weights is not kept: the model is made again)
    assert re.fullmatch(
        r"int8 features at mean cosine 0\.\d+ with 8-bit weights, 0\.\d+ with 7-bit"
        r" weights to fp32 \(the guard is 0\.99\)",
        str(refused.value),
    ), refused.value
    record = json.loads(bad.with_suffix(".refused").read_text())
    assert record["weight_bits"] == [8, 7] and not bad.exists()


def test_int8_is_a_precision_of_the_index(int8_made, exported, tmp_path: Path, monkeypatch):
    """An int8 index: made with the model quantised here, its precision recorded, its
    queries run in int8 too, and an fp32 run on it refused. (The model is made first
    with a lower guard: how close int8 comes to fp32 depends on the CPU's int8
    instructions, 0.984 on a Zen 2 without VNNI, and this test is about the index.)"""
    from engine import ImageSimilaritySearch, IndexMismatch
    from engine.encoding import openvino_cnn as ov
    from support import make_image

    monkeypatch.setenv("XDG_CACHE_HOME", str(exported.parent.parent.parent))
    _write_back(int8_made, exported.parent)
    root = tmp_path / "imgs"
    for i in range(4):
        make_image(root / f"{i}.png", i)
    with ImageSimilaritySearch(root, backbone="efficientnet-lite0", precision="int8") as search:
        search.index()
        assert search.store.get_meta()["precision"] == "int8"
        assert search.encoder.choice.path.name == "openvino int8"
        assert ov.int8_path(exported).is_file()
        query = make_image(tmp_path / "query.png", 1)  # the same picture as 1.png
        assert search.search(query, 2).matches[0].path == "1.png"
    with pytest.raises(IndexMismatch, match="precision int8 .asked fp32"):
        ImageSimilaritySearch(root, precision="fp32")


def test_cached_models_are_checked_before_use(int8_made, exported, tmp_path: Path, monkeypatch):
    """A cached ONNX or int8 model that no longer matches the digest written when it
    was made (bit flip, truncation, garbage, empty) is made again, with a one-line note,
    never used and never a runtime traceback; an int8 model made from other ONNX bytes
    is not used either."""
    import logging
    import shutil

    from engine.encoding import openvino_cnn as ov
    from engine.encoding import sealed

    cache = tmp_path / "cache"
    shutil.copytree(exported.parent.parent, cache / "lookalike")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    model = cache / "lookalike" / "onnx" / exported.name
    good = model.read_bytes()
    notes: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: notes.append(record.getMessage())
    logging.getLogger("lookalike").addHandler(handler)
    try:
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 1
        for damage in (bytes(flipped), good[: len(good) // 3], b"", b"garbage" * 100):
            model.write_bytes(damage)
            notes.clear()
            enc = DeepImageEncoder(hash_dim=16, backbone="efficientnet-lite0", runtime="onnx")
            assert model.read_bytes() == good  # exported again, byte for byte
            assert len(notes) == 1 and "does not match the digest" in notes[0], notes
            assert enc.runtime == "onnx"
        # int8: sealed with the ONNX model it was made from
        _write_back(int8_made, model.parent)  # as make_int8 leaves it
        int8 = ov.int8_path(model)
        assert ov.usable_int8(model) == int8
        seal = json.loads(sealed.seal_path(int8).read_text())
        assert seal["from"] == sealed.digest(model) and 0.5 <= seal["cosine"] <= 1
        assert seal["weight_bits"] == 8  # the guard of 0.9 takes the first weights tried
        bin_file = int8.with_suffix(".bin")
        bin_file.write_bytes(bin_file.read_bytes()[:-10])
        notes.clear()
        assert ov.usable_int8(model) is None and not int8.exists()
        assert "int8 model" in notes[0] and "does not match" in notes[0]
        _write_back(int8_made, model.parent)  # as make_int8 leaves it
        seal_file = sealed.seal_path(int8)
        seal_file.write_text(json.dumps({**json.loads(seal_file.read_text()), "from": "0" * 64}))
        assert ov.usable_int8(model) is None  # made from other ONNX bytes: not used
        # a refusal is tied to the ONNX bytes too
        refused = int8.with_suffix(".refused")
        tried = {"from": sealed.digest(model), "weight_bits": list(ov.WEIGHT_BITS)}
        refused.write_text(json.dumps({"why": "refused earlier", **tried}))
        with pytest.raises(RuntimeError, match="refused earlier"):
            ov.int8_model(model, "efficientnet-lite0", 224)
        for stale in ({"from": "0" * 64}, {"weight_bits": [8]}):  # other bytes, fewer recipes
            refused.write_text(json.dumps({"why": "refused earlier", **tried, **stale}))
            assert ov._refusal(model) is None and not refused.exists()
    finally:
        logging.getLogger("lookalike").removeHandler(handler)


def test_a_disturbed_measurement_is_made_again_later(monkeypatch, tmp_path: Path):
    """Rounds that disagree mark the timings as disturbed: they are used, made again on a
    start after RETRY_AFTER (not before), and kept once a measurement is quiet."""
    from engine.encoding import chooser

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(chooser.Meter, "OTHERS", 1.01)  # other work on the machine: not here
    paths = [chooser.EncoderPath("onnx", "fp32"), chooser.EncoderPath("torch", "fp32")]
    calls: list[str] = []
    wobbly = iter([100, 90, 40, 95, 100, 92])  # onnx: 100, 40, 100; torch: 90, 95, 92

    def rate_of(path):
        calls.append(path.name)
        return next(wobbly)

    steps: list[tuple[str, int, int]] = []
    first = chooser.choose(
        paths, rate_of, "k", on_step=lambda p, i, n: steps.append((p.name, i, n))
    )
    assert steps == [("onnxruntime fp32", 1, 2), ("torch fp32", 2, 2)]  # told once each
    assert "rounds disagreed" in first.why and "measured again" in first.why
    assert first.path.runtime == "onnx" and len(calls) == 6
    entry = chooser._read_cache()["k"]
    assert entry["tries"] == 1 and chooser.due_again(entry) is False  # not yet
    assert chooser.choose(paths, rate_of, "k").path.runtime == "onnx" and len(calls) == 6

    monkeypatch.setattr(chooser, "RETRY_AFTER", 0.0)
    steady = iter([50, 80] * 3)  # quiet now: torch is the faster
    second = chooser.choose(paths, lambda p: next(steady), "k")
    assert second.path.runtime == "torch" and "disturbed" not in second.why
    entry = chooser._read_cache()["k"]
    assert "disturbed" not in entry and entry["rates"] == {"onnxruntime fp32": 50, "torch fp32": 80}
    assert chooser.due_again(entry) is False


def test_other_work_on_the_cores_counts_as_disturbed():
    """Processes spinning on this process's cores while it measures: the meter says so."""
    import os
    import subprocess
    import sys
    import time

    from engine.encoding import chooser

    if chooser._busy(chooser._affinity()) < 0:
        pytest.skip("no per-core CPU accounting here")
    cores = len(os.sched_getaffinity(0))
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(min(cores, 8))
    ]
    try:
        time.sleep(0.3)
        meter = chooser.Meter()
        with meter:
            end = time.perf_counter() + 0.6
            while time.perf_counter() < end:
                pass
        why = meter.disturbed({})
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert why is not None and "busy" in why, (meter.others, meter.wall)


def test_an_int8_model_is_kept_for_each_kind_of_cpu(tmp_path: Path, monkeypatch):
    """A model made and checked where the CPU has VNNI is never taken by one without it
    (its 8-bit weights would saturate there), though they share a cache folder."""
    from engine.encoding import chooser
    from engine.encoding import openvino_cnn as ov

    onnx = tmp_path / "model.onnx"
    paths = {}
    for name, flags in (("vnni", {"avx2", "avx512f", "avx512_vnni"}), ("avx2", {"avx2", "fma"})):
        monkeypatch.setattr(chooser, "cpu_description", lambda f=flags: ("CPU", frozenset(f)))
        paths[name] = ov.int8_path(onnx)
    assert paths["vnni"] != paths["avx2"] and paths["avx2"].name.endswith("-avx2.xml")
    assert all(p.parent == tmp_path for p in paths.values())

"""One encoder path, timed alone in its own process (``python -m benchmarks.encoder_probe``).

Paths are timed in separate processes because they disturb each other inside one:
ONNX Runtime's worker threads spin-wait after each run, and a PyTorch run right after
one was measured at half its speed on 2 cores. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--weights")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from engine.encoding.torch_cnn import DeepImageEncoder, EncoderError

    try:
        enc = DeepImageEncoder(
            128, args.backbone, args.weights, "cpu", precision=args.precision, runtime=args.runtime
        )
    except EncoderError as exc:  # a path that cannot run here (int8 refused by its guard)
        print(json.dumps({"path": f"{args.runtime} {args.precision}", "error": str(exc)}))
        return
    x = np.random.RandomState(0).randint(0, 256, (args.batch, 224, 224, 3)).astype(np.uint8)
    enc.encode_pixels(x)
    enc.encode_pixels(x)
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        enc.encode_pixels(x)
        rates.append(args.batch / (time.perf_counter() - t0))
    print(json.dumps({"path": enc.choice.path.name, "rate": statistics.median(rates)}))


if __name__ == "__main__":
    main()

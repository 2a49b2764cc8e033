"""The peers' side of bench/bench_steering_peers.py: steering-vectors and repeng on the
transformers model, in the peers' venv (.venv-peers), importing nothing from scalpel.

    .venv-peers/bin/python bench/steering_peers.py --hf DIR --data data.json --out peers.safetensors

Writes, per layer k of data["layers"] (the output of model.model.layers[k]):
  steering_vectors.k  steering-vectors' train_steering_vector, mean_aggregator, read_token_index -1
  repeng.k            repeng's ControlVector.train, method "pca_diff" (unit norm, repeng's sign)
  repeng_gguf.k       repeng's ControlVector.import_gguf of the control vector scalpel exported
and the seconds each took (metadata).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

if not hasattr(np, "float_"):  # repeng 0.4.0 names np.float_ in a type annotation; NumPy 2 removed the alias
    np.float_ = np.float64

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import repeng
    import safetensors.torch
    import steering_vectors
    import transformers

    data = json.load(open(args.data))
    layers = data["layers"]
    tok = transformers.AutoTokenizer.from_pretrained(args.hf)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32).eval()
    out, seconds = {}, {}

    t = time.perf_counter()
    sv = steering_vectors.train_steering_vector(model, tok, list(zip(data["positive"], data["negative"])), layers=layers,
                                                read_token_index=-1, batch_size=data["batch_size"])
    seconds["steering_vectors"] = time.perf_counter() - t
    for k in layers:
        out[f"steering_vectors.{k}"] = sv.layer_activations[k].float().contiguous()

    t = time.perf_counter()
    cv = repeng.ControlVector.train(model, tok, [repeng.DatasetEntry(positive=p, negative=n)
                                                 for p, n in zip(data["positive"], data["negative"])],
                                    hidden_layers=layers, method="pca_diff", batch_size=data["batch_size"])
    seconds["repeng"] = time.perf_counter() - t
    for k in layers:
        out[f"repeng.{k}"] = torch.from_numpy(np.asarray(cv.directions[k], dtype=np.float32)).contiguous()

    back = repeng.ControlVector.import_gguf(data["gguf"])
    for k, v in back.directions.items():
        out[f"repeng_gguf.{k}"] = torch.from_numpy(np.asarray(v, dtype=np.float32)).contiguous()
    safetensors.torch.save_file(out, args.out, metadata={"seconds": json.dumps(seconds),
                                                        "gguf_model_type": back.model_type})
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()

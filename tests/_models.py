"""What the model tests share: score logged networks the way a user would, in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A fresh interpreter: mlflow.pytorch.load_model, the digits test split scaled to [0, 1] straight
# from scikit-learn (no hetero data pipeline), the network and its ONNX export scored on it.
SCORE = """
import json, sys
import mlflow.pytorch, numpy as np, onnxruntime, torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from hetero.data import DIGITS_SPLIT_SEED
from sweeps.tracking import metric_value

digits = load_digits()
_, test = train_test_split(np.arange(len(digits.target)), test_size=0.2,
                           stratify=digits.target, random_state=DIGITS_SPLIT_SEED)
x = (digits.images[test] / 16).astype(np.float32)[:, None]     # raw, scaled to [0, 1]
y = digits.target[test]
mlflow.set_tracking_uri(sys.argv[1])
scores = {}
for run_id in sys.argv[2:]:
    net = mlflow.pytorch.load_model(f"runs:/{run_id}/model").eval()
    torch.onnx.export(net, (torch.from_numpy(x[:1]),), "net.onnx", dynamo=False,
                      input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    with torch.no_grad():
        torch_pred = net(torch.from_numpy(x)).argmax(1).numpy()
    session = onnxruntime.InferenceSession("net.onnx", providers=["CPUExecutionProvider"])
    onnx_pred = session.run(None, {"input": x})[0].argmax(1)
    scores[run_id] = {"torch": metric_value(float((torch_pred == y).mean())),
                      "onnx": metric_value(float((onnx_pred == y).mean()))}
print(json.dumps(scores))
"""


def score_in_new_process(uri: str, run_ids: list[str], cwd: Path) -> dict:
    """{run id: {"torch": accuracy, "onnx": accuracy}} on the raw digits test split, as logged
    (6 significant digits)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCORE, uri, *run_ids], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])

"""Export a trained network to a standalone file and check it against PyTorch.

Generic on purpose: every function takes any ``nn.Module`` plus an example input, so whatever
hetero builds (a built-in family, an LW-DNA, a user model) exports the same way.

- ``onnx``: ONNX with a dynamic batch axis, run back with ``onnxruntime`` (extra ``hetero[export]``).
- ``torchscript``: ``torch.jit.trace``, run back with ``torch.jit.load``.
- ``pt2``: ``torch.export`` program (dynamic batch), run back with ``torch.export.load``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["FORMATS", "ExportCheck", "export_module", "run_exported", "check_export",
           "export_and_check", "DEFAULT_TOLERANCE"]

FORMATS = ("onnx", "torchscript", "pt2")
DEFAULT_TOLERANCE = 1e-4   # max |exported - PyTorch| on fp32 logits
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportCheck:
    path: Path
    format: str
    max_abs_diff: float     # over the check batch, fp32 logits
    batch_size: int

    def ok(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        return self.max_abs_diff <= tolerance


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export_module(module: nn.Module, example: torch.Tensor, fmt: str, path) -> Path:
    """Write ``module`` (put in eval mode, on CPU) as ``fmt`` to ``path``; returns the path."""
    _check_format(fmt)
    module = module.to("cpu").eval()
    example = example.to("cpu")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        {"onnx": _to_onnx, "torchscript": _to_torchscript, "pt2": _to_pt2}[fmt](
            module, example, path)
    return path


def _to_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    # The TorchScript-based exporter: it needs no onnxscript and takes well under a second for
    # hetero's networks (the dynamo exporter needs onnxscript and several seconds).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def _to_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
        torch.jit.save(torch.jit.trace(module, example), str(path))


def _to_pt2(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    # A dynamic batch axis, so the program serves any batch size. torch.export specialises a
    # size-1 dimension to a constant, so a single example is traced as a batch of two.
    if len(example) == 1:
        example = torch.cat([example, example])
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def run_exported(path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Logits of the exported file at ``path`` for the CPU batch ``x``."""
    _check_format(fmt)
    x = x.to("cpu", torch.float32).contiguous()
    if fmt == "onnx":
        return _run_onnx(Path(path), x)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))
        if fmt == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")(x)
        return torch.export.load(str(path)).module()(x)


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("checking an ONNX export needs onnxruntime: "
                           "pip install 'hetero[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def check_export(module: nn.Module, path, fmt: str, x: torch.Tensor) -> ExportCheck:
    """Max |exported - PyTorch| over the batch ``x`` (both on CPU, fp32, eval mode)."""
    from hetero.outputs import primary_logits

    module = module.to("cpu").eval()
    with torch.no_grad():   # a network returning several outputs is checked on its logits
        expected = primary_logits(module(x.to("cpu", torch.float32))).float()
    got = primary_logits(run_exported(path, fmt, x)).float()
    if got.shape != expected.shape:
        raise RuntimeError(f"exported {fmt} output has shape {tuple(got.shape)}, PyTorch "
                           f"{tuple(expected.shape)}: the export is wrong")
    return ExportCheck(Path(path), fmt, float((got - expected).abs().max()), len(x))


def export_and_check(module: nn.Module, example: torch.Tensor, fmt: str, path,
                     check_batch: torch.Tensor | None = None) -> ExportCheck:
    """Export with ``example`` and check on ``check_batch`` (default: ``example``)."""
    path = export_module(module, example, fmt, path)
    return check_export(module, path, fmt, example if check_batch is None else check_batch)

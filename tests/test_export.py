"""Export round trips for every registered family (read at run time) and every format."""

import pytest
import torch

from hetero.export import DEFAULT_TOLERANCE, FORMATS, export_and_check
from hetero.latency import measure_latency
from hetero.models import create_model, list_models

pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime: pip install 'hetero[export]'")


@pytest.fixture(scope="module", params=sorted(list_models()))
def network(request):
    torch.manual_seed(0)
    model = create_model(request.param, num_classes=10, input_size=32)
    # Fresh BN statistics (mean 0, var 1) blow a deep ResNet's logits up to ~1e3, where fp32
    # rounding alone exceeds 1e-4: settle them as training would, for realistic logits.
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, 3, 32, 32))
    return request.param, model.eval()


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_round_trip_matches_pytorch(network, fmt, tmp_path):
    name, model = network
    torch.manual_seed(1)
    example, batch = torch.randn(2, 3, 32, 32), torch.randn(5, 3, 32, 32)
    # checked on another batch size than exported with: the batch axis is dynamic
    check = export_and_check(model, example, fmt, tmp_path / f"{name}.{fmt}", check_batch=batch)
    assert check.path.stat().st_size > 0
    assert check.max_abs_diff <= DEFAULT_TOLERANCE, (name, fmt, check.max_abs_diff)


def test_unknown_format_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="onnx, torchscript, pt2"):
        export_and_check(torch.nn.Linear(2, 2), torch.randn(1, 2), "tflite", tmp_path / "x")


def test_latency_is_positive_with_a_spread():
    model = create_model("resnet20", num_classes=10, input_size=32)
    result = measure_latency(model, (3, 32, 32), batch_sizes=(1, 8), samples=5)
    assert set(result) == {1, 8}
    for batch, lat in result.items():
        assert lat.batch_size == batch and lat.median_s > 0 and lat.iqr_s >= 0
    assert result[8].images_per_second > 0

"""QAT's fake quantization sits where ONNX Runtime's Q/DQ graph quantizes, with its scales
(cldet.export.qdq_emulation)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from .conftest import IMGSZ

pytest.importorskip("torch")


def test_module_of_follows_torch_onnx_scope_names():
    from cldet.export.qdq_emulation import Unsupported, module_of

    mods = dict.fromkeys(["model.2.cv1.conv", "model.2.cv1.act", "model.2.m.0", "model.24.cv2.0.0.conv", "model.9.m",
                          "model.12"])
    assert module_of("/model.2/cv1/conv/Conv_output_0", mods) == ("model.2.cv1.conv", "Conv", 0)
    assert module_of("/model.2/cv1/act/Sigmoid_output_0", mods) == ("model.2.cv1.act", "Sigmoid", 0)
    assert module_of("/model.2/m/m.0/Add_output_0", mods) == ("model.2.m.0", "Add", 0)
    assert module_of("/model.24/cv2.0/cv2.0.0/conv/Conv", mods) == ("model.24.cv2.0.0.conv", "Conv", 0)
    assert module_of("/model.9/m_2/MaxPool_output_0", mods) == ("model.9.m", "MaxPool", 2)  # third call of model.9.m
    assert module_of("/model.12/Concat_output_0", mods) == ("model.12", "Concat", 0)
    with pytest.raises(Unsupported):
        module_of("/model.30/attn/MatMul_output_0", mods)


@pytest.fixture(scope="module")
def reference(tiny_run, tmp_path_factory):
    """The tiny run's FP32 ONNX and its PTQ Q/DQ model (nearest rounding), calibrated on random images."""
    from cldet.detector.model import load_checkpoint
    from cldet.export.onnx_export import export_onnx
    from cldet.export.quantize import QuantConfig, quantize_ptq

    work = tmp_path_factory.mktemp("emu")
    model, _ = load_checkpoint(tiny_run / "model.pt")
    fp32 = work / "fp32.onnx"
    export_onnx(model, fp32, IMGSZ)
    rng = np.random.default_rng(0)
    arrays = [rng.random((1, 3, IMGSZ, IMGSZ), dtype=np.float32) for _ in range(4)]
    qdq = quantize_ptq(fp32, work / "int8.onnx", arrays, QuantConfig(weight_rounding="nearest"))
    return model, fp32, qdq, arrays


def test_every_quantized_activation_is_emulated_with_its_scale(reference):
    """The torch student's first fake-quantized tensors equal ONNX Runtime's Q/DQ values (the float emulation of the
    same graph), element for element up to float rounding at a few quantization ties; the SiLU swaps are undone."""
    import torch
    import torch.nn as nn
    from torch.nn.utils import parametrize

    from cldet.export.qat import _weight_fq
    from cldet.export.qdq_emulation import activation_params, emulate, int8_conv_weights, module_of
    from cldet.export.ranges import _augmented_session

    model, fp32, qdq, arrays = reference
    params = activation_params(qdq)
    kinds = {t.rsplit("/", 1)[-1].split("_output")[0] for t in params}
    assert {"Conv", "Sigmoid", "Mul", "Add", "Concat", "MaxPool", "Resize"} <= kinds
    student = copy.deepcopy(model).float().eval().fuse()
    mods = dict(student.named_modules(remove_duplicate=False))
    convs = set(int8_conv_weights(qdq))
    assert len(convs) > 50 and "/model.0/conv/Conv" not in convs  # the stem conv stays float on the cpu target
    for n in convs:
        parametrize.register_parametrization(mods[module_of(n, mods)[0]], "weight", _weight_fq())
    handles = emulate(student, params)
    tensors = ["/model.1/act/Mul_output_0", "/model.2/Concat_output_0", "/model.2/m/m.0/Add_output_0"]
    seen = {}
    mods = dict(student.named_modules(remove_duplicate=False))
    mods["model.1.act"].register_forward_hook(lambda m, i, o: seen.__setitem__(tensors[0], o.detach().numpy()))
    mods["model.2.cv3"].register_forward_pre_hook(lambda m, i: seen.__setitem__(tensors[1], i[0].detach().numpy()))
    mods["model.2.m.0"].register_forward_hook(lambda m, i, o: seen.__setitem__(tensors[2], o.detach().numpy()))
    import onnx

    sess, names = _augmented_session(onnx.load(str(qdq)), [f"{t}_DequantizeLinear_Output" for t in tensors], 1)
    x = arrays[0]
    with torch.no_grad():
        student(torch.from_numpy(x))
    outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    for t in tensors:
        ort, emu = outs[f"{t}_DequantizeLinear_Output"], seen[t]
        scale = params[t][0]
        assert ort.shape == emu.shape
        off = np.abs(ort - emu) > scale / 2  # a different INT8 level
        assert off.mean() < 0.01, (t, off.mean())
        assert np.abs(ort - emu).max() <= 2.01 * scale, t  # a tie rounded the other way, never a wrong scale
    for h in handles:
        h.remove()
    assert all(type(m) is not nn.Module and "FQSiLU" not in type(m).__name__ for m in student.modules())


def test_unplaceable_tensor_changes_nothing(reference):
    from cldet.export.qdq_emulation import Unsupported, activation_params, emulate

    model, _, qdq, _ = reference
    student = copy.deepcopy(model).float().eval().fuse()
    params = activation_params(qdq)
    params["/model.30/attn/MatMul_output_0"] = (0.1, 0, 0, 255)
    before = [type(m) for m in student.modules()]
    with pytest.raises(Unsupported):
        emulate(student, params)
    assert [type(m) for m in student.modules()] == before
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in student.modules())


def test_qat_starts_from_the_graphs_gptq_weights(reference, tmp_path):
    """With no fine-tuning step, QAT's baked weights are the Q/DQ graph's INT8 weights: the fine-tuning starts where
    GPTQ's PTQ ends, not from the FP32 weights (whose nearest rounding differs)."""
    import onnx
    from onnx import numpy_helper

    from cldet.export.qat import QATConfig, qat_finetune
    from cldet.export.qdq_emulation import module_of
    from cldet.export.quantize import QuantConfig, quantize_ptq

    model, fp32, _, arrays = reference
    gptq = quantize_ptq(fp32, tmp_path / "gptq.onnx", arrays, QuantConfig())  # GPTQ rounding, the default
    q = onnx.load(str(gptq))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    for start in (True, False):
        student, _ = qat_finetune(model, arrays, QATConfig(epochs=0), progress=False, qdq=gptq, init_weights=start)
        mods = dict(student.named_modules(remove_duplicate=False))
        same = total = 0
        for n in q.graph.node:
            if n.op_type != "Conv" or getattr(producer.get(n.input[1]), "op_type", None) != "DequantizeLinear":
                continue
            dq = producer[n.input[1]]
            ints, scale = inits[dq.input[0]].astype(np.float64), inits[dq.input[1]].astype(np.float64)
            w = mods[module_of(n.name, mods)[0]].weight.detach().double().numpy()
            same += int((np.round(w / scale.reshape(-1, 1, 1, 1)) == ints).sum())
            total += ints.size
        if start:
            assert same / total > 0.99  # a channel whose largest weight GPTQ rounded inward gets a finer grid
        else:
            assert same / total < 0.99  # from the FP32 weights: nearest rounding, which GPTQ changed

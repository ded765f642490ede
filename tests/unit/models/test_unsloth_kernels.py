"""The Unsloth backend's kernel swap, without a model."""

import types

import torch

from selfreward_lite.models import unsloth as U


def test_kernel_state_round_trip():
    """The swap restores exactly what was there, including 'no instance attribute'."""
    layer = torch.nn.Module()
    layer.self_attn, layer.mlp = torch.nn.Module(), torch.nn.Module()
    model = types.SimpleNamespace(model=types.SimpleNamespace(layers=[layer]))
    plain = U._kernel_state(model)
    layer.self_attn.apply_qkv = "fused-qkv"
    layer.mlp.forward = "fused-mlp"
    fused = U._kernel_state(model)
    U._set_kernel_state(model, plain)
    assert "apply_qkv" not in layer.self_attn.__dict__ and "forward" not in layer.mlp.__dict__
    U._set_kernel_state(model, fused)
    assert layer.self_attn.apply_qkv == "fused-qkv" and layer.mlp.forward == "fused-mlp"

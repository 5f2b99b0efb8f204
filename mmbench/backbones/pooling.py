"""``MaxPool2d`` with the same numbers as ``nn.MaxPool2d`` and a faster CPU path.

On CPU, ATen's NCHW max-pool kernel is scalar and slow at the small planes of our encoders
(6.7 ms for a 64x64x16x15 batch at one thread), while its channels-last kernel is vectorised
over channels (0.3 ms). Max-pooling only selects values, and both kernels scan each window in
the same order and keep the first maximum (NaN counting as the maximum), so the outputs and the
argmax indices are bitwise the same; the backward scatters the incoming gradient to those
indices with the NCHW kernel, as ``nn.MaxPool2d`` does. Outputs and gradients stay NCHW, so
the layers around it see the tensors they saw before (a channels-last gradient would slow the
ReLU backward that follows). On other devices this is ``nn.MaxPool2d``.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


class _ChannelsLastMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode):
        out, idx = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation, ceil_mode
        )
        ctx.args = (kernel, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(x, idx.contiguous())
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, idx = ctx.saved_tensors
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *ctx.args, idx)
        return grad_x, None, None, None, None, None


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (same module type, repr and state), channels-last kernel on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or self.return_indices or not x.is_contiguous():
            return super().forward(x)
        stride = self.stride if self.stride is not None else self.kernel_size
        args = (_pair(self.kernel_size), _pair(stride), _pair(self.padding), _pair(self.dilation), self.ceil_mode)
        if not (torch.is_grad_enabled() and x.requires_grad):
            out, _ = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), *args)
            return out.contiguous()
        return _ChannelsLastMaxPool.apply(x, *args)


"""Enhanced spatial attention (ESA), in the reduced form of RLFN (Kong et al., NTIRE / CVPR Workshops 2022).

ESA comes from RFANet (Liu, Tang, Huang, Wang, Hu, Yan, "Residual Feature Aggregation Network for Image
Super-Resolution", CVPR 2020, §3.3): a small attention branch on a strided, max-pooled copy of the features whose map
is brought back to full size and gates the features with a sigmoid. RLFN (Kong et al. 2022, §3.2) keeps it at the end
of each residual local feature block and drops the extra convolution group of RFANet/RFDN (``conv_max``, ``conv3_``
and the ReLUs): with ``f = esa_channels``,

    c1 = conv1(x)                        1 x 1, C -> f
    c  = conv3(maxpool(conv2(c1)))       conv2: 3 x 3, stride 2, no padding; max pool 7 x 7, stride 3; conv3: 3 x 3
    c  = bilinear(c, size of x)          align_corners=False
    ESA(x) = x * sigmoid(conv4(c + conv_f(c1)))    conv_f: 1 x 1, f -> f; conv4: 1 x 1, f -> C

which is the official code of ``bytedance/RLFN`` (``model/block.py``, class ``ESA``) and the layout of its
checkpoints (``../shared/peers/rlfn/MANIFEST.md``). The child names (``conv1``, ``conv_f``, ``conv2``, ``conv3``,
``conv4``) are the checkpoints' keys.

Input size: the strided convolution and the pooling need ``H, W >= 15`` (``conv2`` leaves ``(H - 1) // 2``, the
7 x 7 pool needs 7 of those); the official code fails on smaller inputs. Here a side shorter than 15 is stretched to
15 (nearest neighbour) inside the branch before ``conv2`` (not in the paper, whose training patches are far larger);
the attention map is resized to the input's own size as always. Inputs of 15 or more pass unchanged (exactly the
official computation), and the rule is written with tensor sizes while tracing, so that an ONNX export follows the
input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rmisr_monai.errors import ConfigurationError

__all__ = ["ESA", "ESA_CHANNELS", "ESA_POOL_KERNEL", "ESA_POOL_STRIDE", "ESA_MIN_SIZE"]

ESA_CHANNELS = 16  # RLFN code and checkpoints: esa_channels=16 (``esa.conv1`` is C -> 16)
ESA_POOL_KERNEL = 7  # RFANet / RLFN: F.max_pool2d(kernel_size=7, stride=3)
ESA_POOL_STRIDE = 3
# smallest side the branch accepts without padding: conv2 (3 x 3, stride 2, no padding) must leave >= 7 pixels
ESA_MIN_SIZE = 2 * ESA_POOL_KERNEL + 1


class ESA(nn.Module):
    """Enhanced spatial attention of RLFN (see the module docstring for the equations).

    Args:
        features: channels of the features gated (``C``).
        esa_channels: channels of the attention branch (RLFN: 16).

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    __constants__ = ["min_size", "pool_kernel", "pool_stride"]

    def __init__(self, features: int, esa_channels: int = ESA_CHANNELS) -> None:
        super().__init__()
        self.min_size = ESA_MIN_SIZE
        self.pool_kernel = ESA_POOL_KERNEL
        self.pool_stride = ESA_POOL_STRIDE
        if min(features, esa_channels) < 1:
            raise ConfigurationError(f"ESA channels must be >= 1, got features={features}, esa={esa_channels}")
        f = esa_channels
        self.conv1 = nn.Conv2d(features, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        h, w = x.shape[2], x.shape[3]
        c = self.conv2(_at_least(c1, self.min_size))
        c = self.conv3(F.max_pool2d(c, kernel_size=self.pool_kernel, stride=self.pool_stride))
        c = F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c + self.conv_f(c1)))


def _at_least(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` with each spatial side shorter than ``size`` stretched to ``size`` (nearest neighbour), else ``x``.

    While tracing, the sides are 0-d tensors: the resize is then always recorded, with ``max(side, size)`` computed
    by tensor ops (a resize to the same size is the identity), so that the traced graph follows the input size.
    """
    h, w = x.shape[2], x.shape[3]
    if not torch.jit.is_scripting() and isinstance(h, torch.Tensor):
        return F.interpolate(x, size=(torch.clamp(h, min=size), torch.clamp(w, min=size)), mode="nearest")
    if h >= size and w >= size:
        return x
    return F.interpolate(x, size=(max(h, size), max(w, size)), mode="nearest")

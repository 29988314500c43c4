"""DenseSR: the lightweight dense network of Wang, Zhao, Qin, Hu, Zong, "Super-resolution reconstruction algorithm of
medical image based on lightweight dense neural network", Journal of Computer Applications 42(8):2586-2592, 2022,
doi 10.11772/j.issn.1001-9081.2021061093.

Only the abstract is available (``shared/papers/dense_sr_wang2022_abstract.txt``). It states: dense blocks, a
"skip layer" structure for global and local feature learning, deconvolution upsampling (key words), few layers and
parameters, and multi-stage training with a dual-task loss for large factors. Everything else below is **our reading
of the abstract**, with SRDenseNet-style choices (Tong et al., ICCV 2017: dense blocks, skip connections,
deconvolution) where the abstract is silent; no figure or equation of the paper could be checked.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from torch import nn

from rmisr_monai.networks.blocks.upsample import as_scale_pair, contract_out_channels, forward_scale, make_upsampler
from rmisr_monai.networks.nets.edsr import cascade_scales
from rmisr_monai.networks.nets.fsrcnn import deconv_upsampler

__all__ = [
    "DenseSR",
    "DenseBlock",
    "DENSE_SR_FEATURES",
    "DENSE_SR_BLOCKS",
    "DENSE_SR_LAYERS",
    "DENSE_SR_GROWTH",
    "DENSE_SR_DECONV_KERNEL",
]

# Our reading of the abstract ("fewer layers and parameters"): sizes chosen to stay lightweight (0.23 M parameters
# at x2, 0.27 M at x4, one channel); the paper's values are not published in the abstract.
DENSE_SR_FEATURES = 48  # feature maps between blocks
DENSE_SR_BLOCKS = 4  # dense blocks
DENSE_SR_LAYERS = 4  # convolution layers per dense block
DENSE_SR_GROWTH = 16  # growth rate (DenseNet, Huang et al. CVPR 2017; SRDenseNet uses 16)
DENSE_SR_DECONV_KERNEL = 4  # 4 x 4 transposed convolution per x2 stage (no checkerboard overlap gaps at stride 2)
DENSE_SR_KERNEL_SIZE = 3


class DenseBlock(nn.Module):
    """Dense block with a local skip: layer ``i`` sees the block input and all previous outputs (concatenated),
    a 1 x 1 convolution fuses everything back to ``features`` channels, and the block input is added (local residual).

    Shapes: ``(N, features, H, W) -> (N, features, H, W)``.
    """

    def __init__(self, features: int, growth: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(features + i * growth, growth, DENSE_SR_KERNEL_SIZE, padding=DENSE_SR_KERNEL_SIZE // 2),
                nn.ReLU(),
            )
            for i in range(layers)
        )
        self.fusion = nn.Conv2d(features + layers * growth, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.layers:
            maps.append(layer(torch.cat(maps, dim=1)))
        return x + self.fusion(torch.cat(maps, dim=1))


class DenseSR(nn.Module):
    """Lightweight dense SR network with multi-stage (progressive) deconvolution upsampling.

    Architecture (our reading of the abstract):

    1. shallow feature extraction: 3 x 3 conv ``in -> F``;
    2. ``num_blocks`` :class:`DenseBlock` s (dense connections + local skip);
    3. global skip layers: the outputs of all blocks are concatenated and fused by a 1 x 1 conv to ``F`` channels
       (so shallow block features reach the end directly), then the shallow features are added (global residual);
    4. upsampling by deconvolution (``ConvTranspose2d`` + ReLU) in stages: x2 per stage for powers of two (x4 = two
       x2 stages, x8 = three), one stage of x3 for scale 3 (:func:`cascade_scales`);
    5. one reconstruction head (3 x 3 conv ``F -> out``) per stage, so every stage yields an image.

    Output: in ``eval()`` mode the final SR image; in ``train()`` mode the list of stage images, final last
    (x4: ``[x2 image, x4 image]``), for the multi-stage training with the dual-task loss (the loss on the
    intermediate image supervises the first stage). The abstract's "more feature information introduced into the
    activation function" is read as the dense concatenation feeding every activation.

    ``upsampler="meta"`` replaces the deconvolution stages and heads by one Meta-SR ``MetaUpsampler``
    ``F -> out`` (a single stage, arbitrary scale; training mode then returns a one-element list).

    Args:
        in_channels: image channels in.
        scale: integer factor for "subpixel" (here: the deconvolution stages); default of ``forward`` for "meta".
        upsampler: ``"subpixel"`` (deconvolution, see above) or ``"meta"``.
        out_channels: image channels out (default ``in_channels``).
        features: feature maps ``F`` between blocks.
        num_blocks: number of dense blocks.
        layers_per_block: convolution layers per dense block.
        growth_rate: channels added by each dense layer.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, round(H*sy), round(W*sx))``.
    """

    __constants__ = ["arbitrary_scale"]

    def __init__(
        self,
        in_channels: int = 1,
        scale: float = 2,
        upsampler: str = "subpixel",
        out_channels: int | None = None,
        features: int = DENSE_SR_FEATURES,
        num_blocks: int = DENSE_SR_BLOCKS,
        layers_per_block: int = DENSE_SR_LAYERS,
        growth_rate: int = DENSE_SR_GROWTH,
    ) -> None:
        super().__init__()
        out_channels = contract_out_channels(
            "DenseSR", in_channels, out_channels, features=features, num_blocks=num_blocks,
            layers_per_block=layers_per_block, growth_rate=growth_rate,
        )  # fmt: skip
        pad = DENSE_SR_KERNEL_SIZE // 2
        self.shallow = nn.Conv2d(in_channels, features, DENSE_SR_KERNEL_SIZE, padding=pad)
        self.blocks = nn.ModuleList(DenseBlock(features, growth_rate, layers_per_block) for _ in range(num_blocks))
        self.skip_fusion = nn.Conv2d(num_blocks * features, features, 1)
        self.arbitrary_scale = upsampler == "meta"
        self.scale: Tuple[float, float] = as_scale_pair(scale)
        self.stages = nn.ModuleList()
        self.heads = nn.ModuleList()
        if upsampler == "subpixel":
            for s in cascade_scales(scale):
                self.stages.append(
                    nn.Sequential(deconv_upsampler(features, features, s, DENSE_SR_DECONV_KERNEL), nn.ReLU())
                )
                self.heads.append(nn.Conv2d(features, out_channels, DENSE_SR_KERNEL_SIZE, padding=pad))
        else:  # the MetaUpsampler, or make_upsampler's error naming an unknown kind
            self.meta = make_upsampler(upsampler, features, out_channels, scale)

    def stage_outputs(
        self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None
    ) -> List[torch.Tensor]:
        """Images after every upsampling stage, final last (one image for "meta" or a single-stage scale)."""
        pair = forward_scale(scale, self.scale, self.arbitrary_scale, "DenseSR")
        shallow = self.shallow(x)
        block_outputs = []
        features = shallow
        for block in self.blocks:
            features = block(features)
            block_outputs.append(features)
        features = shallow + self.skip_fusion(torch.cat(block_outputs, dim=1))
        if self.arbitrary_scale:
            return [self.meta(features, pair)]
        outputs = []
        for stage, head in zip(self.stages, self.heads):
            features = stage(features)
            outputs.append(head(features))
        return outputs

    def forward(
        self, x: torch.Tensor, scale: Optional[Union[float, Tuple[float, float]]] = None
    ) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Final SR image in eval mode; list of stage images (final last) in training mode."""
        outputs = self.stage_outputs(x, scale)
        if self.training:
            return outputs
        return outputs[-1]

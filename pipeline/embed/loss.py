"""The contrastive loss of the siamese paper, with the energy injected rather than chosen inside.

L = Y·E² + (1 − Y)·max(margin − E, 0)², averaged over the pairs fed in. Which pairs are fed
(all in-batch pairs, balanced, mined) is the batch builder's business, so this formula stays
the one in the paper whatever the training strategy.
"""

import torch
from torch import Tensor, nn

from pipeline.embed.energy import Energy


class ContrastiveLoss(nn.Module):
    def __init__(self, energy: Energy, margin: float) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.energy = energy
        self.margin = margin

    def forward(self, x1: Tensor, x2: Tensor, y: Tensor) -> Tensor:
        """Mean loss over pairs (x1[i], x2[i]); y[i] is 1 for a genuine pair, 0 for an impostor."""
        y = y.to(x1.dtype)
        e = self.energy(x1, x2)
        genuine = y * e.pow(2)
        impostor = (1.0 - y) * torch.clamp(self.margin - e, min=0.0).pow(2)
        return (genuine + impostor).mean()

    def extra_repr(self) -> str:
        return f"energy={self.energy!r}, margin={self.margin}"

"""The seed's twin network, exactly as its notebook built it (the recipe configs/seed.json).

100 x 100 grey input; three blocks of ReflectionPad(1) -> Conv 3x3 -> ReLU -> BatchNorm with
1 -> 4 -> 8 -> 8 channels; fully connected 80000 -> 500 -> 500 -> 5.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class SeedBackbone(nn.Module):
    """The seed's CNN + MLP. Its output is not L2-normalised: the seed compared raw outputs, so its
    recipe sets normalize=False and TwinNet.embed leaves them as they are. The sizes are the
    notebook's own: the config (architecture "seed", engine.model.ARCHITECTURES) is not read."""

    def __init__(self, config: object = None) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(1, 4, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(4),
            nn.ReflectionPad2d(1),
            nn.Conv2d(4, 8, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(8),
            nn.ReflectionPad2d(1),
            nn.Conv2d(8, 8, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(8),
        )
        self.fc = nn.Sequential(
            nn.Linear(8 * 100 * 100, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, 5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))

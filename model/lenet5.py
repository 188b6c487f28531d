"""LeNet-5 as the project specifies it (BatchNorm after the first convolution)."""
import torch
from torch import nn


class LeNet5(nn.Module):
    """32x32x1 input -> 10 logits. Softmax is applied by the serving handler, not here."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),   # 32x32 -> 28x28
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2),                  # -> 14x14
            nn.Conv2d(6, 16, kernel_size=5),  # -> 10x10
            nn.ReLU(),
            nn.MaxPool2d(2),                  # -> 5x5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

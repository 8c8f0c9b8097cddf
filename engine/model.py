"""The twin network: one backbone, shared by both branches, ending in an L2-normalised embedding.

A checkpoint holds the weights plus everything needed to use them (architecture, input
size, embedding size, preprocessing, threshold, calibration); its model id is derived from
the weights so a gallery can refuse embeddings made by another model.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ModelNotFound
from .settings import DEFAULT_WEIGHTS, DEVICE, WEIGHTS_DIR  # noqa: F401  (re-exported)


@dataclass
class ModelConfig:
    """Architecture and preprocessing; saved inside every checkpoint."""

    arch: str = "resnet"
    input_size: int = 64
    in_channels: int = 3  # 1 = grey input
    channels: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    embedding_size: int = 128
    dropout: float = 0.0
    normalize: bool = True
    # Preprocessing: aligned 112 crop -> resize to input_size -> (x/255 - mean) / std.
    mean: float = 0.5
    std: float = 0.5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("channels", "blocks"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class BasicBlock(nn.Module):
    """A ResNet basic block (two 3x3 convolutions and a shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNetBackbone(nn.Module):
    """A small ResNet for aligned faces: a stride-2 stem, then stages that halve the resolution.

    The head flattens the final feature map instead of averaging it: on aligned faces
    *where* a feature is (eye, mouth) carries identity, and global pooling throws that away.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        c0 = config.channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, c0, 3, 2, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = c0
        for stage, (cout, count) in enumerate(zip(config.channels, config.blocks)):
            for b in range(count):
                layers.append(BasicBlock(cin, cout, 2 if (b == 0 and stage > 0) else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        side = config.input_size // 2 ** len(config.channels)
        self.head = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Dropout(config.dropout),
            nn.Flatten(),
            nn.Linear(cin * side * side, config.embedding_size),
            nn.BatchNorm1d(config.embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class TwinNet(nn.Module):
    """The Siamese pair: both inputs go through the *same* backbone (shared weights)."""

    def __init__(self, config: ModelConfig | None = None, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.backbone = backbone if backbone is not None else ResNetBackbone(self.config)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of both inputs, for the contrastive loss on their distance."""
        both = self.embed(torch.cat([x1, x2]))
        return both[: len(x1)], both[len(x1) :]

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Embeddings of a preprocessed batch (N x C x H x W): L2-normalised, except for the
        seed's network, whose notebook compared raw outputs (config.normalize=False)."""
        out = self.backbone(batch)
        return F.normalize(out, dim=1) if self.config.normalize else out

    def embed_flip_averaged(self, batch: torch.Tensor) -> torch.Tensor:
        """Embeddings of each face and its mirror image, combined: a cheap, steadier estimate."""
        both = self.embed(torch.cat([batch, batch.flip(-1)]))
        total = both[: len(batch)] + both[len(batch) :]
        return F.normalize(total, dim=1) if self.config.normalize else total / 2

    def preprocess(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Aligned uint8 crops (N x H x W x 3) -> the network's input tensor."""
        x = torch.as_tensor(crops)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        x = x.permute(0, 3, 1, 2).float()
        return normalise(x, self.config)


def embed_crops(
    model: TwinNet,
    crops: np.ndarray,
    flip: bool = True,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Aligned uint8 crops (N x H x W x 3, or one H x W x 3) -> float32 embeddings (N x D), in
    batches, without gradients: model.preprocess, then model.embed_flip_averaged (flip) or
    model.embed. The one embedding loop over crops: FaceEngine.embed_crops (the product) and
    training's validation (training.train.embed_all) both come here. The model's mode is left
    as it is (call .eval() first); device: where the batches go (default: the model's)."""
    crops = np.array(crops, dtype=np.uint8)  # a copy: crops from PIL are read-only (torch warns)
    if crops.ndim == 3:
        crops = crops[None]
    if device is None:
        device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = model.preprocess(crops[start : start + batch_size]).to(device)
            e = model.embed_flip_averaged(x) if flip else model.embed(x)
            out.append(e.float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def normalise(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Float N x 3 x H x W in 0..255 -> model input: resized, grey if asked, standardised."""
    size = config.input_size
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if config.in_channels == 1:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return (x / 255.0 - config.mean) / config.std


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; `device` or $TWIN_DEVICE (engine.settings.DEVICE) overrides."""
    chosen = device or DEVICE
    if chosen:
        return torch.device(chosen)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_id_of(state_dict: dict[str, torch.Tensor]) -> str:
    """A short, stable fingerprint of the weights (not of the file: metadata may change)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return "twin-" + digest.hexdigest()[:12]


def save_checkpoint(model: TwinNet, path: str | Path, **meta: Any) -> str:
    """Write weights + config + metadata atomically; returns the model id."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    model_id = model_id_of(state)
    payload = {"config": asdict(model.config), "state_dict": state, "model_id": model_id, "meta": meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return model_id


def load_checkpoint(
    path: str | Path = DEFAULT_WEIGHTS, device: str | torch.device | None = None
) -> tuple[TwinNet, dict[str, Any]]:
    """Load a checkpoint for inference; returns the model (eval mode) and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(
            f"Model weights not found at {path}. Train them with `make train` "
            f"(python -m training.train), which writes engine/weights/twin.pt."
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ModelConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.to(pick_device(device)).eval()
    meta = dict(payload.get("meta", {}))
    meta["model_id"] = payload.get("model_id") or model_id_of(payload["state_dict"])
    return model, meta


#: Architectures by name (ModelConfig.arch): "module:class" of a backbone built from a
#: ModelConfig, imported when first asked for. A new architecture is one module plus one line here.
ARCHITECTURES: dict[str, str] = {
    "resnet": "engine.model:ResNetBackbone",
    "seed": "engine.seed:SeedBackbone",
}


def build_model(config: ModelConfig) -> TwinNet:
    """The network a config describes: the backbone ARCHITECTURES names, in the twin."""
    try:
        module, _, name = ARCHITECTURES[config.arch].partition(":")
    except KeyError:
        raise ValueError(f"unknown architecture {config.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    backbone = getattr(importlib.import_module(module), name)(config)
    return TwinNet(config, backbone)

"""M3amba: CLIP-driven Mamba fusion for multimodal (HSI + LiDAR) classification."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidInputError, MissingInputError
from .mamba import SS2D


class TinyCLIP(nn.Module):
    """A small randomly initialised CLIP-like image and text tower.

    The image tower is a 3-layer CNN, the text tower a byte-level embedding
    with a 1-layer transformer, both ending in ``embed_dim`` features.
    """

    def __init__(
        self, embed_dim: int = 32, image_size: int = 32, context_length: int = 32
    ) -> None:
        """Initialise a new TinyCLIP.

        Args:
            embed_dim: Feature dimension of both towers.
            image_size: Side the images are resized to.
            context_length: Text length in bytes.
        """
        super().__init__()
        self.embed_dim = embed_dim
        self.image_size = image_size
        self.context_length = context_length
        self.visual = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, embed_dim),
        )
        self.token_embedding = nn.Embedding(256, embed_dim)
        self.positional_embedding = nn.Parameter(
            torch.randn(context_length, embed_dim) * 0.01
        )
        self.transformer = nn.TransformerEncoderLayer(
            embed_dim, 2, 2 * embed_dim, dropout=0.0, batch_first=True
        )
        self.text_projection = nn.Linear(embed_dim, embed_dim)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """UTF-8 bytes of each text, zero-padded/truncated to the context length.

        Args:
            texts: The texts.

        Returns:
            int64 N x context_length.
        """
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            data = list(text.encode())[: self.context_length]
            out[i, : len(data)] = torch.tensor(data, dtype=torch.long)
        return out

    def encode_image(self, image: Tensor) -> Tensor:
        """Encode B x 3 x S x S images.

        Args:
            image: The images.

        Returns:
            B x embed_dim features.
        """
        out: Tensor = self.visual(image)
        return out

    def encode_text(self, tokens: Tensor) -> Tensor:
        """Encode tokenised texts.

        Args:
            tokens: N x context_length bytes.

        Returns:
            N x embed_dim features (mean over the non-padding bytes).
        """
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, src_key_padding_mask=tokens == 0)
        keep = (tokens != 0).float()[..., None]
        x = (x * keep).sum(1) / keep.sum(1).clamp(min=1)
        out: Tensor = self.text_projection(x)
        return out


class OpenCLIPTower(nn.Module):
    """An `open_clip` model (frozen) with its tokenizer, loaded from a local file."""

    def __init__(self, model: nn.Module, tokenizer: Any, image_size: int) -> None:
        """Initialise a new OpenCLIPTower.

        Args:
            model: The open_clip model.
            tokenizer: Its tokenizer (callable on a list of texts).
            image_size: Input side of its image tower.
        """
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.embed_dim = int(model.text_projection.shape[-1])  # type: ignore[union-attr, index]
        # CLIP's input normalisation (OpenAI statistics).
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        self.register_buffer('mean', mean, persistent=False)
        self.register_buffer('std', std, persistent=False)

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Tokenize texts with the model's tokenizer.

        Args:
            texts: The texts.

        Returns:
            Token ids.
        """
        tokens: Tensor = self.tokenizer(list(texts))
        return tokens

    def encode_image(self, image: Tensor) -> Tensor:
        """Encode B x 3 x S x S images in [0, 1].

        Args:
            image: The images.

        Returns:
            B x embed_dim features.
        """
        out: Tensor = self.model.encode_image((image - self.mean) / self.std)  # type: ignore[operator]
        return out

    def encode_text(self, tokens: Tensor) -> Tensor:
        """Encode tokenised texts.

        Args:
            tokens: Token ids.

        Returns:
            N x embed_dim features.
        """
        out: Tensor = self.model.encode_text(tokens)  # type: ignore[operator]
        return out


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Forbid Hugging Face Hub downloads while open_clip builds a model."""
    saved = {k: os.environ.get(k) for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')}
    os.environ.update({k: '1' for k in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_open_clip(
    weights: str | os.PathLike[str] | None, model_name: str = 'ViT-B-32'
) -> OpenCLIPTower:
    """Build an open_clip model and load its weights from a local file.

    Nothing is downloaded: ``weights`` must be an existing file (an open_clip
    checkpoint / state dict of ``model_name``), or None for random weights.
    Models whose tokenizer comes from the Hugging Face Hub are refused.

    Args:
        weights: Path of the CLIP weights, or None.
        model_name: open_clip architecture name (e.g. ``'ViT-B-32'``).

    Returns:
        The frozen tower.

    Raises:
        MissingInputError: If ``weights`` does not exist.
        ImportError: If ``open_clip_torch`` is not installed.
        ValueError: If the model needs a downloaded tokenizer.
        InvalidInputError: If the weights do not fit the model.
    """
    if weights is not None and not os.path.isfile(weights):
        raise MissingInputError(weights, 'CLIP weights not found')
    try:
        import open_clip
    except ImportError as err:
        raise ImportError(
            'CLIP towers need open_clip_torch: pip install "torchgeo-ext[clip]"'
        ) from err
    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f'unknown open_clip model {model_name!r}')
    if config.get('text_cfg', {}).get('hf_tokenizer_name'):
        raise ValueError(
            f'{model_name} uses a Hugging Face tokenizer that would be downloaded'
        )
    with _offline():
        try:
            model = open_clip.create_model(
                model_name,
                pretrained=os.path.abspath(weights) if weights is not None else None,
            )
        except RuntimeError as err:
            raise InvalidInputError(
                weights or model_name, f'cannot load CLIP ({err})'
            ) from err
        tokenizer = open_clip.get_tokenizer(model_name)
    model.eval().requires_grad_(False)
    image_size = int(config.get('vision_cfg', {}).get('image_size', 224))
    return OpenCLIPTower(model, tokenizer, image_size)


class ModalityAdapter(nn.Module):
    """Residual bottleneck adapter ``f + alpha * MLP(f)`` on a CLIP feature."""

    def __init__(self, dim: int, ratio: float = 0.25, alpha: float = 0.2) -> None:
        """Initialise a new ModalityAdapter.

        Args:
            dim: CLIP feature dimension.
            ratio: Bottleneck size relative to ``dim``.
            alpha: Residual weight of the adapter.
        """
        super().__init__()
        hidden = max(1, int(dim * ratio))
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
        )
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        """Adapt features.

        Args:
            x: B x dim.

        Returns:
            B x dim.
        """
        return x + self.alpha * self.mlp(x)


class FusionBlock(nn.Module):
    """Per-modality SS2D, then Cross-SS2D between the modalities, then MLPs."""

    def __init__(self, dim: int, d_state: int, expand: float) -> None:
        """Initialise a new FusionBlock.

        Args:
            dim: Token dimension.
            d_state: State size of the scans.
            expand: Inner channels of the scans relative to ``dim``.
        """
        super().__init__()
        self.norm_self = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.ssm = nn.ModuleList(SS2D(dim, d_state, expand) for _ in range(2))
        self.norm_cross = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.cross = nn.ModuleList(SS2D(dim, d_state, expand) for _ in range(2))
        self.norm_mlp = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            for _ in range(2)
        )

    def forward(self, h: Tensor, l: Tensor) -> tuple[Tensor, Tensor]:
        """Fuse one step.

        Args:
            h: B x H x W x dim HSI tokens.
            l: B x H x W x dim LiDAR tokens.

        Returns:
            The updated HSI and LiDAR tokens.
        """
        streams = [h, l]
        for i in range(2):
            streams[i] = streams[i] + self.ssm[i](self.norm_self[i](streams[i]))
        normed = [self.norm_cross[i](streams[i]) for i in range(2)]
        crossed = [
            streams[i] + self.cross[i](normed[i], context=normed[1 - i])
            for i in range(2)
        ]
        out = [
            c + mlp(norm(c))
            for c, mlp, norm in zip(crossed, self.mlp, self.norm_mlp, strict=True)
        ]
        return out[0], out[1]


class M3amba(nn.Module):
    """M3amba patch classifier (HSI + LiDAR)."""

    def __init__(
        self,
        hsi_bands: int,
        lidar_bands: int,
        num_classes: int,
        clip: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        prompt: str = 'a remote sensing image of {}.',
        dim: int = 64,
        depth: int = 4,
        d_state: int = 16,
        expand: float = 2.0,
        adapter_ratio: float = 0.25,
        adapter_alpha: float = 0.2,
    ) -> None:
        """Initialise a new M3amba.

        Args:
            hsi_bands: HSI bands (first in the input).
            lidar_bands: LiDAR bands (after the HSI bands).
            num_classes: Number of classes.
            clip: A CLIP tower (:class:`OpenCLIPTower` or :class:`TinyCLIP`);
                it is frozen. Default: a :class:`TinyCLIP`.
            class_names: Class names for the text prompts (None: no text
                tower, no ``aux_logits``).
            prompt: Prompt template with one ``{}`` for the class name.
            dim: Token dimension of the Mamba fusion.
            depth: Number of fusion blocks.
            d_state: State size of the selective scans.
            expand: Inner channels of the scans relative to ``dim``.
            adapter_ratio: Adapter bottleneck relative to the CLIP dimension.
            adapter_alpha: Residual weight of the adapters.

        Raises:
            ValueError: If ``class_names`` does not have ``num_classes`` names.
        """
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f'{len(class_names)} class names for {num_classes} classes'
            )
        self.hsi_bands = hsi_bands
        self.lidar_bands = lidar_bands
        self.num_classes = num_classes
        self.clip = clip if clip is not None else TinyCLIP()
        self.clip.requires_grad_(False)
        self.clip.eval()
        e = int(self.clip.embed_dim)  # type: ignore[arg-type]
        self.to_rgb = nn.ModuleList(
            [nn.Conv2d(hsi_bands, 3, 1), nn.Conv2d(lidar_bands, 3, 1)]
        )
        self.adapters = nn.ModuleList(
            ModalityAdapter(e, adapter_ratio, adapter_alpha) for _ in range(2)
        )
        self.stems = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1), nn.BatchNorm2d(dim), nn.GELU())
            for c in (hsi_bands, lidar_bands)
        )
        self.semantic = nn.ModuleList(nn.Linear(e, dim) for _ in range(2))
        self.blocks = nn.ModuleList(
            FusionBlock(dim, d_state, expand) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(2 * dim, num_classes)
        self.logit_scale = nn.Parameter(
            torch.tensor(float(torch.log(torch.tensor(10.0))))
        )
        text = torch.zeros(0, e)
        if class_names is not None:
            tokenize = self.clip.tokenize  # type: ignore[operator]
            prompts = [prompt.format(name) for name in class_names]
            with torch.no_grad():
                text = self.clip.encode_text(tokenize(prompts)).float()  # type: ignore[operator]
            text = F.normalize(text, dim=-1)
        self.text_features: Tensor
        self.register_buffer('text_features', text)

    def train(self, mode: bool = True) -> M3amba:
        """Set training mode; the frozen CLIP tower stays in eval mode.

        Args:
            mode: Training mode.

        Returns:
            This model.
        """
        super().train(mode)
        self.clip.eval()
        return self

    def clip_features(self, x: Tensor, modality: int) -> Tensor:
        """Adapted CLIP image feature of one modality.

        Args:
            x: B x C x P x P bands of the modality.
            modality: 0 (HSI) or 1 (LiDAR).

        Returns:
            B x embed_dim.
        """
        rgb = torch.sigmoid(self.to_rgb[modality](x))
        size = int(self.clip.image_size)  # type: ignore[arg-type]
        rgb = F.interpolate(rgb, size=(size, size), mode='bicubic', align_corners=False)
        feature = self.clip.encode_image(rgb).float()  # type: ignore[operator]
        adapted: Tensor = self.adapters[modality](feature)
        return adapted

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Classify the centre pixels of patches.

        Args:
            x: B x (hsi + lidar) x P x P patches.

        Returns:
            ``logits`` (B x K), ``aux_logits`` (dict ``hsi``/``lidar`` of
            B x K text-similarity logits; empty without class names) and
            ``features`` (``hsi``, ``lidar``: adapted CLIP features; ``fused``:
            the head's input).
        """
        parts = [
            x[:, : self.hsi_bands],
            x[:, self.hsi_bands : self.hsi_bands + self.lidar_bands],
        ]
        clip = [self.clip_features(p, i) for i, p in enumerate(parts)]
        tokens = []
        for i, part in enumerate(parts):
            t = self.stems[i](part).permute(0, 2, 3, 1)
            tokens.append(t + self.semantic[i](clip[i])[:, None, None])
        h, l = tokens
        for block in self.blocks:
            h, l = block(h, l)
        fused = self.norm(h + l)
        p = x.shape[-1]
        centre = fused[:, p // 2, p // 2]
        z = torch.cat([centre, fused.mean((1, 2))], dim=1)
        aux: dict[str, Tensor] = {}
        if self.text_features.shape[0]:
            scale = self.logit_scale.exp()
            for name, feature in zip(('hsi', 'lidar'), clip, strict=True):
                aux[name] = scale * F.normalize(feature, dim=-1) @ self.text_features.T
        return {
            'logits': self.head(z),
            'aux_logits': aux,
            'features': {'hsi': clip[0], 'lidar': clip[1], 'fused': z},
        }


def m3amba_base(
    hsi_bands: int = 144,
    lidar_bands: int = 1,
    num_classes: int = 15,
    class_names: Sequence[str] | None = None,
    clip_weights: str | None = None,
    clip_model: str = 'ViT-B-32',
    **kwargs: Any,
) -> M3amba:
    """M3amba with an open_clip tower (ViT-B/32 by default) and 4 fusion blocks.

    Args:
        hsi_bands: HSI bands.
        lidar_bands: LiDAR bands.
        num_classes: Number of classes.
        class_names: Class names for the text prompts.
        clip_weights: Path of the CLIP weights (None: random CLIP weights,
            which the paper does not use; nothing is downloaded).
        clip_model: open_clip architecture name.
        **kwargs: Override any other :class:`M3amba` argument.

    Returns:
        The model.
    """
    clip = load_open_clip(clip_weights, clip_model)
    return M3amba(
        hsi_bands,
        lidar_bands,
        num_classes,
        clip=clip,
        class_names=class_names,
        **kwargs,
    )


def m3amba_tiny(
    hsi_bands: int = 144,
    lidar_bands: int = 1,
    num_classes: int = 15,
    class_names: Sequence[str] | None = None,
    **kwargs: Any,
) -> M3amba:
    """A tiny M3amba for tests and CPU runs (TinyCLIP tower, dim 16, 1 block).

    Args:
        hsi_bands: HSI bands.
        lidar_bands: LiDAR bands.
        num_classes: Number of classes.
        class_names: Class names for the text prompts.
        **kwargs: Override any other :class:`M3amba` argument.

    Returns:
        The model.
    """
    args: dict[str, Any] = {'dim': 16, 'depth': 1, 'd_state': 4, 'expand': 1.0}
    args.update(kwargs)
    clip = args.pop('clip', None) or TinyCLIP(embed_dim=16, image_size=16)
    return M3amba(
        hsi_bands, lidar_bands, num_classes, clip=clip, class_names=class_names, **args
    )

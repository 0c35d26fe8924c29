"""Segment Anything (SAM) models built from the ``segment_anything`` package's own classes.

Weights are only read from a checkpoint path the user gives, never downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import Tensor, nn

from ..errors import InvalidInputError, MissingInputError

__all__ = [
    'SAM_VARIANTS',
    'SamConfig',
    'build_sam',
    'freeze',
    'load_sam',
    'read_sam_state_dict',
    'sam_tiny',
    'sam_variant_of',
]


@dataclass(frozen=True)
class SamConfig:
    """Hyperparameters of one SAM variant (those of ``segment_anything.build_sam``).

    Attributes:
        encoder_embed_dim: ViT width.
        encoder_depth: ViT blocks.
        encoder_num_heads: ViT attention heads.
        encoder_global_attn_indexes: Blocks with global (not windowed) attention.
        image_size: Square input side of the image encoder.
        prompt_embed_dim: Width of the image embedding, prompts and mask decoder.
        window_size: Window of the windowed-attention blocks.
        decoder_mlp_dim: MLP width of the two-way transformer.
        decoder_num_heads: Heads of the two-way transformer.
        iou_head_hidden_dim: Hidden width of the mask-quality head.
        mask_in_chans: Hidden channels of the mask-prompt downscaling.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    prompt_embed_dim: int = 256
    window_size: int = 14
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16


#: The released SAM variants (as in ``segment_anything.build_sam``) and the tiny test SAM.
SAM_VARIANTS: dict[str, SamConfig] = {
    'vit_b': SamConfig(768, 12, 12, (2, 5, 8, 11)),
    'vit_l': SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    'vit_h': SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    # Two-layer ViT at 256 px (16 x 16 patches), 32-wide embeddings: tests only.
    'tiny': SamConfig(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        image_size=256,
        prompt_embed_dim=32,
        window_size=8,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
        mask_in_chans=4,
    ),
}


def _assemble(config: SamConfig) -> Sam:
    """Assemble a randomly initialised SAM from ``segment_anything``'s classes."""
    patch_size = 16
    embedding_size = config.image_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=config.image_size,
            patch_size=patch_size,
            embed_dim=config.encoder_embed_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_num_heads,
            mlp_ratio=4,
            out_chans=config.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=config.window_size,
            global_attn_indexes=config.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def sam_tiny() -> Sam:
    """A tiny, randomly initialised SAM for tests (two-layer ViT, 32 wide, 256 px).

    Returns:
        The model (train mode).
    """
    return _assemble(SAM_VARIANTS['tiny'])


def build_sam(
    variant: str = 'vit_b', checkpoint: str | os.PathLike[str] | None = None
) -> Sam:
    """Build a SAM variant, with weights from a checkpoint path if one is given.

    Args:
        variant: ``vit_b``, ``vit_l``, ``vit_h`` (``segment_anything.sam_model_registry``)
            or ``tiny`` (tests).
        checkpoint: A SAM state dict (``sam_vit_b_01ec64.pth`` etc.); None keeps
            the random initialisation.

    Returns:
        The model, in eval mode when weights were loaded.

    Raises:
        ValueError: For an unknown variant.
        MissingInputError: If the checkpoint does not exist.
        InvalidInputError: If it is not a SAM state dict of this variant.
    """
    if variant not in SAM_VARIANTS:
        raise ValueError(
            f'unknown SAM variant {variant!r}; choose one of {", ".join(SAM_VARIANTS)}'
        )
    if checkpoint is not None:
        return load_sam(checkpoint, variant)
    if variant == 'tiny':
        return sam_tiny()
    sam: Sam = sam_model_registry[variant]()
    return sam


def read_sam_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a SAM checkpoint file as a state dict, without building a model.

    Args:
        path: The checkpoint.

    Returns:
        The state dict (tensors on the CPU).

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is unreadable or not a SAM state dict.
    """
    if not os.path.isfile(path):
        raise MissingInputError(path, 'SAM checkpoint not found')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many types for foreign files
        raise InvalidInputError(
            path, f'not a readable SAM checkpoint ({type(error).__name__})'
        ) from error
    prefixes = ('image_encoder.', 'prompt_encoder.', 'mask_decoder.')
    if (
        not isinstance(state, dict)
        or not all(isinstance(v, Tensor) for v in state.values())
        or not all(any(str(k).startswith(p) for k in state) for p in prefixes)
        or 'image_encoder.patch_embed.proj.weight' not in state
    ):
        hint = (
            ' (this looks like a Lightning checkpoint)'
            if isinstance(state, dict) and 'state_dict' in state
            else ''
        )
        raise InvalidInputError(
            path,
            'not a SAM state dict: expected image_encoder.*, prompt_encoder.* and '
            f'mask_decoder.* weights as released by segment-anything{hint}',
        )
    return state


def sam_variant_of(state: dict[str, Tensor]) -> str | None:
    """Name the SAM variant a state dict belongs to, from its image encoder's shape.

    Args:
        state: A SAM state dict.

    Returns:
        A key of :data:`SAM_VARIANTS`, or None if no variant matches.
    """
    width = int(state['image_encoder.patch_embed.proj.weight'].shape[0])
    blocks = {
        int(key.split('.')[2])
        for key in state
        if key.startswith('image_encoder.blocks.')
    }
    for name, config in SAM_VARIANTS.items():
        if (config.encoder_embed_dim, config.encoder_depth) == (width, len(blocks)):
            return name
    return None


def load_sam(path: str | os.PathLike[str], variant: str | None = None) -> Sam:
    """Build a SAM and load its weights from a user checkpoint, in eval mode.

    Args:
        path: A SAM state dict file.
        variant: Expected variant (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``);
            None: the variant the checkpoint holds.

    Returns:
        The model with its weights, in eval mode.

    Raises:
        ValueError: For an unknown variant name.
        MissingInputError: If the checkpoint does not exist.
        InvalidInputError: If it is not a SAM state dict, or of another variant.
    """
    if variant is not None and variant not in SAM_VARIANTS:
        raise ValueError(
            f'unknown SAM variant {variant!r}; choose one of {", ".join(SAM_VARIANTS)}'
        )
    state = read_sam_state_dict(path)
    found = sam_variant_of(state)
    if found is None:
        width = int(state['image_encoder.patch_embed.proj.weight'].shape[0])
        raise InvalidInputError(
            path,
            f'a SAM image encoder of width {width} matches no known variant '
            f'({", ".join(SAM_VARIANTS)})',
        )
    if variant is not None and variant != found:
        raise InvalidInputError(
            path, f'this is a SAM {found} checkpoint, not {variant}; use {found}'
        )
    sam = sam_tiny() if found == 'tiny' else sam_model_registry[found]()
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise InvalidInputError(
            path,
            f'the weights do not fit SAM {found} ({first[1].strip() if len(first) > 1 else first[0]})',
        ) from error
    sam.eval()
    return sam


def freeze(module: nn.Module) -> nn.Module:
    """Freeze a module's parameters (no gradients).

    Args:
        module: The module.

    Returns:
        The same module.
    """
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module

"""Mamba (S6) selective state-space blocks and the chunked selective scan, in plain PyTorch."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Largest decay (in log units) allowed over one chunk. exp(30) ~ 1e13 stays far
#: below float32's maximum (3e38); larger bounds lose precision (a 16k-step scan
#: of strongly decaying inputs: 1.4e-5 from the float64 result at 60, 6.5e-6 at
#: 30, 1.7e-6 for the float32 recurrence).
MAX_LOG_DECAY = 30.0


def _load_kernel() -> Callable[..., Tensor] | None:
    """The ``mamba-ssm`` CUDA kernel, or None when the package is not installed."""
    try:
        module = importlib.import_module('mamba_ssm.ops.selective_scan_interface')
    except (ImportError, OSError, RuntimeError):  # absent, or built for another CUDA
        return None
    kernel: Callable[..., Tensor] = module.selective_scan_fn
    return kernel


_KERNEL: list[Callable[..., Tensor] | None] = []


def mamba_kernel() -> Callable[..., Tensor] | None:
    """Return the ``mamba-ssm`` selective-scan kernel if it can be imported (cached).

    Returns:
        ``selective_scan_fn`` or None.
    """
    if not _KERNEL:
        _KERNEL.append(_load_kernel())
    return _KERNEL[0]


def selective_scan_reference(
    x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> Tensor:
    """Step-by-step selective scan (the definition; slow, for tests).

    Args:
        x: Inputs, batch x length x channels.
        delta: Positive step sizes, batch x length x channels.
        A: State matrix (negative entries), channels x states.
        B: Input matrices, batch x length x states.
        C: Output matrices, batch x length x states.
        D: Skip weights per channel (None: no skip).

    Returns:
        Outputs, batch x length x channels (float32 unless inputs are float64).
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, delta, A, B, C = (t.to(dtype) for t in (x, delta, A, B, C))
    batch, length, channels = x.shape
    h = x.new_zeros(batch, channels, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, t, :, None] * A)
        h = decay * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * D.to(dtype)
    return y


def _chunk_cumsum(x: Tensor) -> Tensor:
    """Cumulative sum over dim 2 of a B x K x T x F tensor, as a triangular matmul.

    A matrix product with a lower-triangular matrix of ones runs several times
    faster on CPUs than ``cumsum`` over a non-contiguous dimension.
    """
    t = x.shape[2]
    tril = torch.ones(t, t, dtype=x.dtype, device=x.device).tril()
    return torch.matmul(tril, x)


def selective_scan(
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    *,
    chunk_size: int = 32,
    max_log_decay: float = MAX_LOG_DECAY,
    block_elements: int | None = None,
    use_kernel: bool = True,
) -> Tensor:
    """Selective scan as a chunked parallel scan (any device).

    Args:
        x: Inputs, batch x length x channels.
        delta: Positive step sizes, batch x length x channels.
        A: State matrix (negative entries), channels x states.
        B: Input matrices, batch x length x states.
        C: Output matrices, batch x length x states.
        D: Skip weights per channel (None: no skip).
        chunk_size: Steps computed in parallel per chunk (reduced automatically
            when the decay over a chunk would overflow float32).
        max_log_decay: Bound on the decay (log units) over one chunk.
        block_elements: States (batch x steps x channels x states) computed
            at once; longer sequences are scanned block by block, carrying
            the state (default 2**18 on the CPU, 2**26 on a GPU).
        use_kernel: Use the ``mamba-ssm`` CUDA kernel when it is installed and
            the inputs are on a GPU.

    Returns:
        Outputs, batch x length x channels, float32 (float64 for float64
        inputs).

    Raises:
        ValueError: If the shapes do not match.
    """
    _check_scan_shapes(x, delta, A, B, C)
    dtype = torch.promote_types(x.dtype, torch.float32)
    kernel = mamba_kernel() if use_kernel and x.is_cuda else None
    if kernel is not None and dtype == torch.float32:
        y = kernel(
            x.transpose(1, 2).contiguous(),
            delta.transpose(1, 2).contiguous(),
            A.float().contiguous(),
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            None if D is None else D.float(),
        )
        return y.transpose(1, 2).float()
    x, delta, A, B, C = (t.to(dtype) for t in (x, delta, A, B, C))
    batch, length, channels = x.shape
    states = A.shape[1]
    block = _steps_per_block(x, states, chunk_size, block_elements)
    h = x.new_zeros(batch, channels * states)
    ys = []
    for start in range(0, length, block):
        end = min(length, start + block)
        y_block, h = _scan_block(
            x[:, start:end],
            delta[:, start:end],
            A,
            B[:, start:end],
            C[:, start:end],
            h,
            chunk_size,
            max_log_decay,
        )
        ys.append(y_block)
    y = torch.cat(ys, dim=1)
    if D is not None:
        y = y + x * D.to(dtype)
    return y


def _check_scan_shapes(
    x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor
) -> None:
    """Raise ValueError unless the scan's inputs fit together (see :func:`selective_scan`)."""
    batch, length, channels = x.shape
    states = A.shape[1]
    if delta.shape != x.shape or A.shape[0] != channels:
        raise ValueError(
            f'shapes do not match: x {tuple(x.shape)}, delta {tuple(delta.shape)}, '
            f'A {tuple(A.shape)}'
        )
    if B.shape != (batch, length, states) or C.shape != (batch, length, states):
        raise ValueError(
            f'B and C must be {(batch, length, states)}, got {tuple(B.shape)} '
            f'and {tuple(C.shape)}'
        )


def _steps_per_block(
    x: Tensor, states: int, chunk_size: int, block_elements: int | None
) -> int:
    """Steps scanned at once, a multiple of ``chunk_size`` where it can be.

    Blocks of steps bound the memory (and keep the working set in cache): only
    a block's states exist at a time; the state is carried across blocks.
    """
    batch, length, channels = x.shape
    per_step = max(1, batch * channels * states)
    target = block_elements or (2**26 if x.is_cuda else 2**18)
    block = max(1, min(length, target // per_step))
    if block > chunk_size:
        block -= block % chunk_size
    return block


def _scan_block(
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    h0: Tensor,
    chunk_size: int,
    max_log_decay: float,
) -> tuple[Tensor, Tensor]:
    """Chunked parallel scan of one block from state ``h0`` (B x D*N).

    Returns:
        The block's outputs (without the skip term) and its final state.
    """
    batch, length, channels = x.shape
    states = A.shape[1]
    # log_decay[b, t, d, n] = delta[b, t, d] * A[d, n] <= 0.
    log_decay = delta[..., None] * A
    u = (delta * x)[..., None] * B[:, :, None, :]
    chunk = max(1, min(chunk_size, length))
    while True:
        pad = (-length) % chunk
        n_chunks = (length + pad) // chunk
        # Padded steps neither decay nor add anything.
        ld = F.pad(log_decay, (0, 0, 0, 0, 0, pad)) if pad else log_decay
        cum = _chunk_cumsum(ld.reshape(batch, n_chunks, chunk, channels * states))
        if chunk == 1 or float(cum[:, :, -1].detach().min()) > -max_log_decay:
            break
        chunk //= 2
    decay = cum.exp()
    up = F.pad(u, (0, 0, 0, 0, 0, pad)) if pad else u
    # Inside each chunk, from a zero state: h[t] = decay[t] * sum_{s<=t} u[s] / decay[s].
    summed = _chunk_cumsum(up.reshape(decay.shape) / decay)
    # Chain the chunks: the state entering chunk k, from chunk k-1's last state.
    last_decay, last_sum = decay[:, :, -1], summed[:, :, -1]
    carry = h0
    carries = []
    for k in range(n_chunks):
        carries.append(carry)
        carry = last_decay[:, k] * (carry + last_sum[:, k])
    entering = torch.stack(carries, dim=1)
    h = decay * (summed + entering[:, :, None])
    h = h.reshape(batch, n_chunks * chunk, channels, states)[:, :length]
    return torch.einsum('bldn,bln->bld', h, C), carry


class MambaBlock(nn.Module):
    """The Mamba (S6) mixer: gated selective state-space layer over a sequence.

    ``x -> in_proj -> (u, z)``; ``u -> causal depthwise conv -> SiLU ->``
    input-dependent ``delta`` (low-rank, softplus), ``B``, ``C`` -> selective
    scan; output ``out_proj(scan * SiLU(z))``. Sizes follow the reference
    implementation (``expand=2``, ``d_state=16``, ``d_conv=4``,
    ``dt_rank=ceil(d_model / 16)``).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2.0,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        chunk_size: int = 32,
    ) -> None:
        """Initialise a new MambaBlock.

        Args:
            d_model: Token dimension.
            d_state: State size ``N`` per channel.
            d_conv: Kernel of the causal depthwise convolution.
            expand: Inner channels relative to ``d_model``.
            dt_rank: Rank of the ``delta`` projection (default ``ceil(d_model/16)``).
            dt_min: Smallest initial step size.
            dt_max: Largest initial step size.
            chunk_size: Chunk of :func:`selective_scan`.
        """
        super().__init__()
        d_inner = int(expand * d_model)
        self.d_inner = d_inner
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        # Step sizes start log-uniform in [dt_min, dt_max] (softplus inverse in the bias).
        dt = torch.exp(
            torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        )
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real initialisation: A = -(1, 2, ..., N) for every channel.
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def ssm(self, u: Tensor) -> Tensor:
        """Selective scan of already convolved, activated inner channels.

        Args:
            u: batch x length x d_inner.

        Returns:
            batch x length x d_inner.
        """
        proj = self.x_proj(u)
        dt, B, C = proj.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        return selective_scan(
            u, delta, A, B, C, self.D.float(), chunk_size=self.chunk_size
        ).to(u.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Mix a sequence.

        Args:
            x: batch x length x d_model.

        Returns:
            batch x length x d_model.
        """
        length = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = self.conv1d(u.transpose(1, 2))[..., :length].transpose(1, 2)
        y = self.ssm(F.silu(u))
        return self.out_proj(y * F.silu(z))


class SS2D(nn.Module):
    """2-D selective scan (VMamba's SS2D) over a feature map.

    The map is flattened in four orders (rows, columns, and both reversed);
    each order gets its own ``delta``/``B``/``C`` projections and the four
    scans are merged back onto the grid and summed. ``directions`` limits the
    scan to the first 1-4 of these orders.
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: float = 2.0,
        d_conv: int = 3,
        directions: int = 4,
        chunk_size: int = 32,
    ) -> None:
        """Initialise a new SS2D.

        Args:
            dim: Channels of the feature map.
            d_state: State size per channel.
            expand: Inner channels relative to ``dim``.
            d_conv: Kernel of the depthwise 2-D convolution.
            directions: Number of scan orders (1-4).
            chunk_size: Chunk of :func:`selective_scan`.

        Raises:
            ValueError: If ``directions`` is not in 1-4.
        """
        super().__init__()
        if not 1 <= directions <= 4:
            raise ValueError(f'directions must be 1-4, got {directions}')
        d_inner = int(expand * dim)
        self.directions = directions
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(
            d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner
        )
        self.scans = nn.ModuleList(
            _Scan(d_inner, d_state, chunk_size) for _ in range(directions)
        )
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def scan_map(self, u: Tensor, context: Tensor | None = None) -> Tensor:
        """Scan a B x C x H x W inner map in every direction and merge.

        Args:
            u: B x d_inner x H x W activated inner map.
            context: Optional B x d_inner x H x W map whose tokens drive
                ``delta``/``B``/``C`` (a cross-modal scan); default ``u``.

        Returns:
            B x H x W x d_inner.
        """
        b, c, h, w = u.shape
        ctx = u if context is None else context
        orders = _scan_orders(u)[: self.directions]
        ctx_orders = _scan_orders(ctx)[: self.directions]
        out = u.new_zeros(b, c, h * w)
        for i, (seq, cseq, scan) in enumerate(
            zip(orders, ctx_orders, self.scans, strict=True)
        ):
            y = scan(seq.transpose(1, 2), cseq.transpose(1, 2)).transpose(1, 2)
            out = out + _unscan(y, i, h, w)
        return out.reshape(b, c, h, w).permute(0, 2, 3, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Mix a feature map.

        Args:
            x: B x H x W x dim (channels last, as in VMamba).
            context: Optional B x H x W x dim map of another modality whose
                tokens select ``delta``/``B``/``C`` (Cross-SS2D).

        Returns:
            B x H x W x dim.
        """
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv2d(u.permute(0, 3, 1, 2)))
        ctx = None
        if context is not None:
            cu, _ = self.in_proj(context).chunk(2, dim=-1)
            ctx = F.silu(self.conv2d(cu.permute(0, 3, 1, 2)))
        y = self.out_norm(self.scan_map(u, ctx))
        return self.out_proj(y * F.silu(z))


class _Scan(nn.Module):
    """``delta``/``B``/``C`` projections and state parameters of one scan order."""

    def __init__(self, d_inner: int, d_state: int, chunk_size: int) -> None:
        super().__init__()
        self.dt_rank = math.ceil(d_inner / 16)
        self.d_state = d_state
        self.chunk_size = chunk_size
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        dt = torch.exp(
            torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)
        )
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, u: Tensor, context: Tensor) -> Tensor:
        proj = self.x_proj(context)
        dt, B, C = proj.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        return selective_scan(
            u, delta, A, B, C, self.D.float(), chunk_size=self.chunk_size
        ).to(u.dtype)


def _scan_orders(x: Tensor) -> list[Tensor]:
    """Row-major, column-major and both reversed: four B x C x HW sequences."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return [rows, cols, rows.flip(-1), cols.flip(-1)]


def _unscan(y: Tensor, order: int, h: int, w: int) -> Tensor:
    """Map a B x C x HW sequence of scan ``order`` back to row-major order."""
    if order >= 2:
        y = y.flip(-1)
    if order % 2 == 1:
        b, c, _ = y.shape
        y = y.reshape(b, c, w, h).transpose(2, 3).reshape(b, c, h * w)
    return y

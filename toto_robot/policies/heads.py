"""Policy heads: what turns a frozen encoder's output and the robot's state into a chunk of actions.

    head = MLPHead(feature_dim, state_dim, chunk * A)               # pooled features [B, F] + state -> [B, chunk * A]
    head = ChunkTransformerHead(token_dim, n_tokens, state_dim, A, chunk)  # tokens [B, N, C] + state -> [B, chunk * A]

``mlp``: the encoder's trainable pool squeezes each frame to one vector, an MLP maps it (and the
state) to the actions. ``transformer``: ACT's decoder (Zhao et al. 2023) on frozen tokens. Every
camera token (projected, with a learned code of its grid cell and of its camera) and one state token
form the memory; a small transformer encoder mixes them, and ``chunk`` learned queries, one per
future step, cross-attend to it and each read out that step's action. The head sees every token, so
where the cube sits relative to the fingers is not squeezed away by a pool first. Built on PyTorch's
own ``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` (pre-norm).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from toto_robot.utils.config import ConfigError

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
HEADS = ("mlp", "transformer")


class MLPHead(nn.Module):
    """[features, normalised state] -> MLP (``hidden_sizes``, default two layers of ``hidden``) -> tanh action in [-1, 1]
    (``squash=False``: the last layer's output as it is, for standardised actions)."""

    def __init__(self, feature_dim: int, state_dim: int, action_dim: int, hidden: int = 256, hidden_sizes: list[int] | None = None,
                 activation: str = "gelu", squash: bool = True):
        super().__init__()
        self.squash = squash
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        sizes = [feature_dim + state_dim, *(hidden_sizes or [hidden, hidden])]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], action_dim))

    def forward(self, features: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        x = features if state is None else torch.cat([features, state], dim=-1)  # (B, F + S)
        out = self.net(x)  # (B, A)
        return torch.tanh(out) if self.squash else out


class ChunkTransformerHead(nn.Module):
    """ACT's action decoder on frozen tokens: [B, cameras * N, C] tokens + normalised state [B, S] -> [B, chunk * A].

    ``n_tokens`` is one camera's token count N (its grid cells get learned position codes); the tokens of
    ``cameras`` views arrive concatenated camera by camera, and a learned camera code is added to each
    view's tokens so the head knows which view a token came from."""

    def __init__(self, token_dim: int, n_tokens: int, state_dim: int, action_dim: int, chunk: int, d_model: int = 128,
                 layers: int = 2, heads: int = 4, dropout: float = 0.1, cameras: int = 1, squash: bool = True):
        super().__init__()
        if d_model % heads:
            raise ConfigError(f"policy.d_model ({d_model}) must be a multiple of policy.heads ({heads})")
        self.n_tokens, self.cameras, self.chunk, self.action_dim, self.squash = n_tokens, cameras, chunk, action_dim, squash
        self.token_in = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, d_model))
        self.cell = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)  # grid-cell code, shared by the cameras
        self.camera = nn.Parameter(torch.randn(cameras, d_model) * 0.02)  # which view a token came from
        self.state_in = nn.Linear(state_dim, d_model) if state_dim else None
        self.queries = nn.Parameter(torch.randn(chunk, d_model) * 0.02)  # one per future step of the chunk
        block = dict(d_model=d_model, nhead=heads, dim_feedforward=4 * d_model, dropout=dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**block), layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**block), layers)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, action_dim)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        B, M, _ = tokens.shape
        if M != self.cameras * self.n_tokens:
            raise ValueError(f"transformer head reads {self.cameras} camera(s) x {self.n_tokens} tokens, got {M} tokens")
        pos = (self.camera[:, None] + self.cell[None]).reshape(M, -1)  # (cameras * N, d)
        memory = self.token_in(tokens.float()) + pos  # (B, M, d)
        if self.state_in is not None and state is not None:
            memory = torch.cat([self.state_in(state)[:, None], memory], dim=1)  # (B, 1 + M, d)
        memory = self.encoder(memory)
        x = self.decoder(self.queries.expand(B, -1, -1), memory)  # (B, chunk, d): each query reads its step's action
        out = self.out(self.norm(x)).reshape(B, self.chunk * self.action_dim)  # (B, chunk * A)
        return torch.tanh(out) if self.squash else out

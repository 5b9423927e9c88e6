"""Policy heads: what turns a frozen encoder's output and the robot's state into a chunk of actions.

    head = MLPHead(feature_dim, state_dim, chunk * A)               # pooled features [B, F] + state -> [B, chunk * A]
    head = ChunkTransformerHead(token_dim, n_tokens, state_dim, A, chunk)  # tokens [B, N, C] + state -> [B, chunk * A]
    W, b, info = fit_ridge(X, Y, groups)                             # ridge: closed form, its penalty chosen on held-out episodes

``mlp``: the encoder's trainable pool squeezes each frame to one vector, an MLP maps it (and the
state) to the actions. ``transformer``: ACT's decoder (Zhao et al. 2023) on frozen tokens. Every
camera token (projected, with a learned code of its grid cell and of its camera) and one state token
form the memory; a small transformer encoder mixes them, and ``chunk`` learned queries, one per
future step, cross-attend to it and each read out that step's action. The head sees every token, so
where the cube sits relative to the fingers is not squeezed away by a pool first. Built on PyTorch's
own ``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` (pre-norm). ``ridge``: one linear map from the
pooled features and the state, fit in closed form (``fit_ridge``); its penalty is chosen by grouped
cross-validation over the training episodes, so with a handful of real episodes it shrinks towards the
training mean of the (relative) action, i.e. towards holding still, instead of memorising them.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn as nn

from toto_robot.utils.config import ConfigError
from toto_robot.utils.stats import group_folds

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
HEADS = ("mlp", "transformer", "ridge")
POOLED_HEADS = ("mlp", "ridge")  # heads that read the encoder's pooled features (the transformer reads every token)
RIDGE_PENALTIES = tuple(10.0 ** np.arange(-4, 4.5, 0.5))  # ridge penalty per training frame, on standardised features: the grid
# searched (the largest shrinks every weight to about nothing: the training mean)
IMAGE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # ... each with the image features' columns scaled by one of these (0: the state alone)
STATE_WEIGHTS = (0.0, 0.25, 1.0)  # ... and the state's own columns by one of these (its motion columns keep 1): where a state sits
# differs between a few episodes, how it moves less


class MLPHead(nn.Module):
    """[features, normalised state] -> MLP (``hidden_sizes``, default two layers of ``hidden``) -> tanh action in [-1, 1]
    (``squash=False``: the last layer's output as it is, for standardised actions)."""

    def __init__(self, feature_dim: int, state_dim: int, action_dim: int, hidden: int = 256, hidden_sizes: list[int] | None = None,
                 activation: str = "gelu", squash: bool = True):
        super().__init__()
        self.squash = squash
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        sizes = [feature_dim + state_dim, *([hidden, hidden] if hidden_sizes is None else hidden_sizes)]  # []: one linear map
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


def fit_ridge(X: torch.Tensor, Y: torch.Tensor, groups: np.ndarray, blocks: list[tuple[int, tuple[float, ...]]] = (),
              penalties=RIDGE_PENALTIES, folds: int = 5, output_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Ridge regression of ``Y`` [F, O] on ``X`` [F, D], its penalties chosen by grouped cross-validation -> (weight [O, D],
    bias [O], info), so that ``X @ weight.T + bias`` predicts Y (``nn.Linear``'s layout).

    Each column of X is standardised by the fitting frames (a column that never moves gets no weight). The penalty is
    ``lambda * frames`` for each lambda of ``penalties``. ``blocks``: consecutive column groups from the first column, each
    (columns, weights): the group's columns are scaled by one of its weights, i.e. penalised lambda / weight^2 (0: left
    out); columns after the last group keep weight 1. So hundreds of image features cannot force a few state columns
    to be shrunk as hard as they are, and cross-validation can leave a group out altogether. The combination with the
    lowest mean squared error on held-out groups of frames (``groups`` [F]: the episode of each frame;
    ``min(folds, episodes)`` folds of whole episodes, ``group_folds``) is refit on every frame. Frames of one episode are
    near copies of each other: frame-wise or leave-one-out cross-validation would pick almost no penalty. One SVD per
    fold and weight combination gives the whole path (Hastie et al., ESL 3.4.1). ``output_weight`` [O]: how much each
    output's held-out error counts in that choice (default: equally). ``info``: the chosen lambda and weights, and the
    held-out (weighted) MSE of every combination."""
    X, Y = X.double(), Y.double()
    ow = torch.ones(Y.shape[1], dtype=torch.float64) if output_weight is None else output_weight.double() * Y.shape[1] / output_weight.double().sum()
    lambdas = [float(x) for x in penalties]
    combos = list(itertools.product(*[[float(w) for w in ws] for _, ws in blocks]))  # one weight per group
    sizes = [int(n) for n, _ in blocks]
    if len(np.unique(groups)) >= 2:
        splits = group_folds(np.asarray(groups), folds)
    else:  # one episode: contiguous blocks of it
        parts = np.array_split(np.arange(len(X)), min(folds, len(X)))
        splits = [(np.setdiff1d(np.arange(len(X)), b), b) for b in parts]
    cv = np.zeros((len(combos), len(lambdas)))
    for i, combo in enumerate(combos):
        col_w = _column_weights(X.shape[1], sizes, combo)
        for tr, te in splits:
            for j, (w, b) in enumerate(_ridge_path(X[tr], Y[tr], lambdas, col_w)):
                cv[i, j] += float((((X[te] @ w + b - Y[te]) ** 2) * ow).sum()) / Y.numel()
    i, j = np.unravel_index(int(np.argmin(cv)), cv.shape)
    (w, b), = _ridge_path(X, Y, [lambdas[j]], _column_weights(X.shape[1], sizes, combos[i]))
    return w.T.float().contiguous(), b.float(), {"lambda": lambdas[j], "weights": list(combos[i]), "folds": len(splits),
                                                 "cv_mse": {str(list(c)): dict(zip(lambdas, row.tolist())) for c, row in zip(combos, cv)}}


def _column_weights(D: int, sizes: list[int], weights: tuple[float, ...]) -> torch.Tensor:
    """[D]: each column's weight, ``weights[g]`` for the ``sizes[g]`` columns of group g (from the first), 1 after them."""
    col = torch.ones(D, dtype=torch.float64)
    start = 0
    for n, w in zip(sizes, weights):
        col[start:start + n] = w
        start += n
    return col


def _ridge_path(X: torch.Tensor, Y: torch.Tensor, lambdas: list[float], col_weight: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Ridge fits of Y [F, O] on X [F, D] for each penalty lambda * F, standardised column d scaled by ``col_weight[d]``
    (0: left out) -> [(w [D, O], b [O])] in X's own units."""
    mx, my = X.mean(0), Y.mean(0)
    sx = X.std(0) if len(X) > 1 else torch.ones_like(mx)
    keep = (sx > 1e-8 * max(1.0, float(sx.max()))) & (col_weight > 0)  # a column that never moves gets no weight
    if not keep.any():  # nothing to read: the mean
        return [(torch.zeros(X.shape[1], Y.shape[1], dtype=X.dtype), my) for _ in lambdas]
    scale = sx[keep] / col_weight[keep]
    Z = (X[:, keep] - mx[keep]) / scale  # (F, D')
    U, S, Vh = torch.linalg.svd(Z, full_matrices=False)  # Z = U diag(S) Vh
    UtY = U.T @ (Y - my)  # (r, O)
    out = []
    for lam in lambdas:
        d = S / (S ** 2 + lam * len(X))  # (r,)
        w = torch.zeros(X.shape[1], Y.shape[1], dtype=X.dtype)
        w[keep] = (Vh.T @ (d[:, None] * UtY)) / scale[:, None]  # (D, O) back in X's units
        out.append((w, my - mx @ w))
    return out

"""DALL-E-style discrete VAE (Ramesh et al. 2021) with the public ``dall_e`` package's layout.

Encoder: 7x7 input conv, 4 groups of residual blocks (max-pool after groups 1-3 -> 8x down),
ReLU + 1x1 conv to ``vocab_size`` logits. Decoder: 1x1 conv from one-hot codes, 4 groups of
residual blocks (nearest upsampling after groups 1-3), ReLU + 1x1 conv to 6 channels (mean and
log-scale of a logit-Laplace distribution per RGB channel). Parameter names match ``dall_e``
(``blocks.group_1.block_1.res_path.conv_1.w`` ...), so its official weights load directly:
see ``load_dalle_weights``. Training uses the gumbel-softmax relaxation with temperature and
KL-weight annealing and the logit-Laplace likelihood (eps = 0.1).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from toto_robot.tokenizers.base import Tokenizer
from toto_robot.utils.io import CheckpointError, check_state_dict

LOGIT_LAPLACE_EPS = 0.1


class Conv2d(nn.Module):
    """``dall_e``'s conv: parameters named ``w``/``b``, 'same' padding."""

    def __init__(self, n_in: int, n_out: int, kw: int):
        super().__init__()
        self.kw = kw
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw * kw))
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)


class ResBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, n_layers: int, kernels: tuple[int, int, int, int]):
        super().__init__()
        n_hid = n_out // 4
        self.post_gain = 1.0 / n_layers**2
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = [n_in, n_hid, n_hid, n_hid, n_out]
        layers = []
        for i, kw in enumerate(kernels, start=1):
            layers += [(f"relu_{i}", nn.ReLU()), (f"conv_{i}", Conv2d(widths[i - 1], widths[i], kw))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.id_path(x) + self.post_gain * self.res_path(x)


class DalleEncoder(nn.Module):
    def __init__(self, n_hid: int = 256, n_blk_per_group: int = 2, vocab_size: int = 8192, group_count: int = 4):
        super().__init__()
        n_layers = group_count * n_blk_per_group
        widths = [n_hid * 2 ** min(g, 3) for g in range(group_count)]  # 1, 2, 4, 8 x n_hid
        groups: list = [("input", Conv2d(3, n_hid, 7))]
        n_in = n_hid
        for g, w in enumerate(widths, start=1):
            blocks = [(f"block_{i + 1}", ResBlock(n_in if i == 0 else w, w, n_layers, (3, 3, 3, 1))) for i in range(n_blk_per_group)]
            if g < group_count:
                blocks.append(("pool", nn.MaxPool2d(kernel_size=2)))
            groups.append((f"group_{g}", nn.Sequential(OrderedDict(blocks))))
            n_in = w
        groups.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(n_in, vocab_size, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(groups))

    def forward(self, x):  # (B, 3, H, W) mapped pixels -> (B, V, H/8, W/8) logits
        return self.blocks(x)


class DalleDecoder(nn.Module):
    def __init__(self, n_init: int = 128, n_hid: int = 256, n_blk_per_group: int = 2, vocab_size: int = 8192, group_count: int = 4):
        super().__init__()
        n_layers = group_count * n_blk_per_group
        widths = [n_hid * 2 ** min(group_count - 1 - g, 3) for g in range(group_count)]  # 8, 4, 2, 1 x n_hid
        groups: list = [("input", Conv2d(vocab_size, n_init, 1))]
        n_in = n_init
        for g, w in enumerate(widths, start=1):
            blocks = [(f"block_{i + 1}", ResBlock(n_in if i == 0 else w, w, n_layers, (1, 3, 3, 3))) for i in range(n_blk_per_group)]
            if g < group_count:
                blocks.append(("upsample", nn.Upsample(scale_factor=2, mode="nearest")))
            groups.append((f"group_{g}", nn.Sequential(OrderedDict(blocks))))
            n_in = w
        groups.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(n_in, 6, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(groups))

    def forward(self, z):  # (B, V, h, w) one-hot or relaxed codes -> (B, 6, 8h, 8w)
        return self.blocks(z)


def map_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    return (1 - 2 * eps) * x + eps


def unmap_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    return ((x - eps) / (1 - 2 * eps)).clamp(0, 1)


def logit_laplace_nll(stats: torch.Tensor, x_mapped: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood (nats per sub-pixel) of mapped pixels under a logit-Laplace."""
    mu, log_b = stats[:, :3], stats[:, 3:].clamp(-7.0, 5.0)
    xc = x_mapped.clamp(1e-4, 1 - 1e-4)
    logit = torch.log(xc) - torch.log1p(-xc)
    nll = math.log(2.0) + log_b + torch.log(xc) + torch.log1p(-xc) + (logit - mu).abs() / log_b.exp()
    return nll.mean()


class DVAETokenizer(Tokenizer):
    kind = "dvae"

    def __init__(self, vocab_size: int = 8192, n_hid: int = 256, n_blk_per_group: int = 2, n_init: int = 128,
                 temperature_start: float = 1.0, temperature_end: float = 1.0 / 16, kl_weight_start: float = 0.0,
                 kl_weight_end: float = 6.6, anneal_fraction: float = 0.5):
        super().__init__(vocab_size=vocab_size, downsample=8)
        self.hparams = dict(vocab_size=vocab_size, n_hid=n_hid, n_blk_per_group=n_blk_per_group, n_init=n_init,
                            temperature_start=temperature_start, temperature_end=temperature_end,
                            kl_weight_start=kl_weight_start, kl_weight_end=kl_weight_end, anneal_fraction=anneal_fraction)
        self.encoder = DalleEncoder(n_hid, n_blk_per_group, vocab_size)
        self.decoder = DalleDecoder(n_init, n_hid, n_blk_per_group, vocab_size)

    def config(self) -> dict:
        return dict(self.hparams)

    def schedule(self, step: int, total: int) -> tuple[float, float]:
        """(temperature, kl weight): cosine-annealed over the first ``anneal_fraction`` of training."""
        h = self.hparams
        t = min(1.0, step / max(1.0, h["anneal_fraction"] * total))
        c = 0.5 * (1 - math.cos(math.pi * t))
        tau = h["temperature_start"] * (h["temperature_end"] / h["temperature_start"]) ** c
        return tau, h["kl_weight_start"] + (h["kl_weight_end"] - h["kl_weight_start"]) * c

    def training_loss(self, x, step, total_steps):
        tau, beta = self.schedule(step, total_steps)
        xm = map_pixels(x)
        logits = self.encoder(xm)  # (B, V, h, w)
        z = F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)
        stats = self.decoder(z)  # (B, 6, H, W)
        nll = logit_laplace_nll(stats, xm)
        log_q = F.log_softmax(logits, dim=1)
        kl = (log_q.exp() * (log_q + math.log(self.vocab_size))).sum(1).mean()  # KL(q || uniform) per token
        n_pix, n_tok = x[0].numel(), logits.shape[2] * logits.shape[3]
        loss = nll + beta * kl * n_tok / n_pix
        with torch.no_grad():
            recon = unmap_pixels(torch.sigmoid(stats[:, :3]))
            mse = F.mse_loss(recon, x)
        return loss, {"nll": nll.item(), "kl": kl.item(), "tau": tau, "kl_weight": beta, "mse": mse.item()}

    def encode(self, frames):
        frames = self.check_frames(frames)
        with self._encode_mode():
            x = self._encoder_input(map_pixels(self.to_unit(frames)))
            codes = self.encoder(x).argmax(1).cpu()  # (B, h, w)
        return codes.clone() if codes.is_inference() else codes  # an ordinary tensor for the caller

    @torch.no_grad()
    def decode(self, codes):
        codes = self.check_codes(codes).to(self.device)
        z = F.one_hot(codes, self.vocab_size).permute(0, 3, 1, 2).float()  # (B, V, h, w)
        stats = self.decoder(z)
        return self.to_uint8(unmap_pixels(torch.sigmoid(stats[:, :3])))


class _Inert:
    """Stands in for every class a module pickle names (``dall_e.encoder.Encoder``, ``torch.nn.ReLU`` ...):
    it records the state it is given and runs nothing."""

    def __init__(self, *args, **kwargs):
        self.__dict__["_args"] = args

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


# what a pickled nn.Module needs beyond its classes: tensors, parameters, storages, ordered dicts
_SAFE_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
                 ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
                 ("torch", "device"), ("torch", "Size")}


def _module_pickle():
    """A stand-in for the ``pickle`` module whose Unpickler resolves only the globals above (and
    torch's storage types); any other name becomes an inert stub class, so loading runs no code."""
    import pickle
    import types

    stubs: dict[tuple[str, str], type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in _SAFE_GLOBALS or (module == "torch" and name.endswith("Storage")):
                return super().find_class(module, name)
            return stubs.setdefault((module, name), type(name, (_Inert,), {"__module__": f"inert.{module}"}))

    return types.SimpleNamespace(Unpickler=Unpickler, load=lambda f, **kw: Unpickler(f, **kw).load(), __name__="pickle")


def read_module_pickle(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an ``nn.Module`` pickled whole (``torch.save(module)``, as DALL-E's published
    ``encoder.pkl``/``decoder.pkl``), read without importing or running the code it names: classes
    become inert stubs, and the parameters and buffers are collected from their ``_parameters`` and
    ``_buffers`` by the names ``state_dict()`` would give them. Works with ``weights_only`` loading on."""
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_module_pickle())
    out: dict[str, torch.Tensor] = {}

    def walk(node, prefix: str) -> None:
        d = getattr(node, "__dict__", {})
        for group in ("_parameters", "_buffers"):
            for k, v in (d.get(group) or {}).items():
                if isinstance(v, torch.Tensor):
                    out[prefix + k] = v.detach().clone()
        for k, child in (d.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{k}.")

    walk(obj, "")
    if not out:
        raise CheckpointError(f"{path} holds no nn.Module parameters (is it a pickled module?)")
    return out


def load_dalle_weights(tok: DVAETokenizer, encoder_path: str | Path | None = None, decoder_path: str | Path | None = None) -> DVAETokenizer:
    """Load the official DALL-E dVAE weights from local files into ``tok`` (an 8192-code, n_hid=256 dVAE).

    Each file is either the published pickle (``encoder.pkl`` / ``decoder.pkl``, a whole ``dall_e``
    module) or a state dict in ``dall_e``'s layout (``blocks.input.w`` ...) saved with ``torch.save``.
    Pickles are read by ``read_module_pickle``, which runs none of the code they name, so neither the
    ``dall_e`` package nor ``weights_only=False`` is needed. Raises ``CheckpointError`` naming
    missing/unexpected keys.
    """
    for part, path in (("encoder", encoder_path), ("decoder", decoder_path)):
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"DALL-E {part} weights not found: {path}")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            try:  # a whole pickled module (the published .pkl files): read its tensors without running code
                sd = read_module_pickle(path)
            except Exception as e2:
                raise CheckpointError(f"cannot read DALL-E {part} weights {path}: {e}; as a pickled module: {e2}") from e2
        if isinstance(sd, nn.Module):
            sd = sd.state_dict()
        module = getattr(tok, part)
        check_state_dict(module.state_dict(), sd, str(path), what=f"DALL-E {part}",
                         hint=" (vocab or width differ from the tokenizer config)")
        module.load_state_dict(sd)
    return tok

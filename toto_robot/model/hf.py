"""Export to / import from Hugging Face ``LlamaForCausalLM`` (same math: RMSNorm, SwiGLU, rotate-half RoPE).

``export_hf(model, path)`` returns the ``LlamaForCausalLM`` and, given a path, also writes it there as a
Hugging Face folder (``config.json`` + ``model.safetensors``). ``import_hf(model_or_folder)`` builds a
Toto from a ``LlamaForCausalLM`` or such a folder (read locally, nothing is downloaded), with the same
logits, or refuses: every config field either maps onto Toto (grouped-query attention included), has
no effect on the logits, or is a setting Toto does not implement (RoPE scaling, attention or MLP
biases, activations other than SiLU, a head_dim other than hidden_size / heads, any field it does not
know), and then ``UnsupportedConfigError`` names the field and its value.
"""
from __future__ import annotations

from pathlib import Path

import torch

from toto_robot.errors import InputNotFoundError, UserError
from toto_robot.model.toto import Toto, TotoConfig
from toto_robot.utils.io import staged_dir

# ours -> HF, per layer (the fused q/k/v and gate/up matrices are split by rows)
_LAYER_MAP = {
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
    "norm1.weight": "input_layernorm.weight",
    "norm2.weight": "post_attention_layernorm.weight",
}
_QKV = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight")
_GATE_UP = ("mlp.gate_proj.weight", "mlp.up_proj.weight")

# LlamaConfig fields that Toto reads (mapped in import_hf) or checks
_MAPPED = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
           "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
           "rope_parameters", "rope_theta", "rope_scaling", "attention_dropout", "hidden_act", "attention_bias",
           "mlp_bias", "head_dim"}
# fields with no effect on the logits (initialisation, generation, bookkeeping; pretraining_tp only
# splits the same matmuls); PretrainedConfig's generic fields are added at run time
_NO_EFFECT = {"initializer_range", "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "pretraining_tp",
              "transformers_version", "_name_or_path", "model_type", "architectures", "dtype", "torch_dtype"}
_SILU = ("silu", "swish")


class UnsupportedConfigError(UserError, ValueError):
    """A Hugging Face config setting that Toto does not implement (importing would change the model)."""


def hf_config(cfg: TotoConfig):
    from transformers import LlamaConfig

    if cfg.input_dim:
        raise ValueError("only discrete-token Toto models have a LlamaForCausalLM equivalent")
    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.mlp_hidden,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base},
        attention_bias=False, mlp_bias=False, attention_dropout=cfg.dropout, hidden_act="silu",
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def to_hf_state_dict(model: Toto) -> dict[str, torch.Tensor]:
    cfg = model.config
    sd = model.state_dict()
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"], "model.norm.weight": sd["norm.weight"], "lm_head.weight": sd["head.weight"]}
    q, kv = cfg.n_head * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            out[f"model.layers.{i}.{theirs}"] = sd[f"layers.{i}.{ours}"]
        for name, w in zip(_QKV, sd[f"layers.{i}.attn.wqkv.weight"].split([q, kv, kv])):
            out[f"model.layers.{i}.{name}"] = w
        for name, w in zip(_GATE_UP, sd[f"layers.{i}.mlp.w13.weight"].chunk(2)):
            out[f"model.layers.{i}.{name}"] = w
    return out


def export_hf(model: Toto, path: str | Path | None = None, overwrite: bool = False):
    """A ``LlamaForCausalLM`` holding this model's weights; with ``path``, also written there as a
    Hugging Face folder (``LlamaForCausalLM.from_pretrained(path)`` or ``import_hf(path)`` reads it).
    The folder appears complete in one rename; an existing one is kept unless ``overwrite``."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(hf_config(model.config)).eval()
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in to_hf_state_dict(model).items()}, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"HF export mismatch: missing {missing}, unexpected {unexpected}")
    if path is not None:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it or choose another path")
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged_dir(path) as tmp:
            hf.save_pretrained(tmp)
    return hf


def check_llama_config(c) -> None:
    """Raise ``UnsupportedConfigError`` naming the first field of a Llama config that Toto cannot reproduce."""
    from transformers import PretrainedConfig

    def refuse(field: str, value, why: str):
        raise UnsupportedConfigError(f"LlamaConfig.{field}={value!r} is not supported: {why}; "
                                     "importing it would give a model with different outputs")

    if getattr(c, "model_type", "llama") != "llama":
        refuse("model_type", c.model_type, "only Llama checkpoints map onto Toto")
    known = _MAPPED | _NO_EFFECT | set(PretrainedConfig().to_dict())
    unknown = sorted(k for k in c.to_dict() if k not in known)
    if unknown:
        raise UnsupportedConfigError(f"LlamaConfig has fields toto_robot does not know: {unknown}; it cannot tell "
                                     "whether they change the model, so it does not import it")
    act = getattr(c, "hidden_act", "silu")
    if act not in _SILU:
        refuse("hidden_act", act, "Toto's MLP is SwiGLU (silu)")
    for field in ("attention_bias", "mlp_bias"):
        if getattr(c, field, False):
            refuse(field, True, "Toto's projections have no bias")
    head_dim = getattr(c, "head_dim", None)
    if head_dim is not None and head_dim != c.hidden_size // c.num_attention_heads:
        refuse("head_dim", head_dim, f"Toto's head dim is hidden_size / num_attention_heads = {c.hidden_size // c.num_attention_heads}")
    if getattr(c, "rope_scaling", None) and (c.rope_scaling or {}).get("rope_type", c.rope_scaling.get("type", "default")) != "default":
        refuse("rope_scaling", c.rope_scaling, "Toto implements plain RoPE (rope_type 'default') only")
    rope = dict(getattr(c, "rope_parameters", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        refuse("rope_parameters", rope, "Toto implements plain RoPE (rope_type 'default') only")
    extra = {k: v for k, v in rope.items() if k not in ("rope_type", "type", "rope_theta")
             and not (k == "partial_rotary_factor" and v == 1.0)}
    if extra:
        refuse("rope_parameters", rope, f"Toto's RoPE has no {sorted(extra)}")
    n_kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    if c.num_attention_heads % n_kv:
        refuse("num_key_value_heads", n_kv, f"num_attention_heads={c.num_attention_heads} is not a multiple of it")


def _rope_theta(c) -> float:
    rope = getattr(c, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(c, "rope_theta", 10_000.0)))


def import_hf(hf_model, **config_overrides) -> Toto:
    """A Toto built from a ``LlamaForCausalLM`` or a local folder holding one (grouped-query attention
    included). Raises ``UnsupportedConfigError`` for a setting Toto does not implement."""
    if isinstance(hf_model, (str, Path)):
        hf_model = _load_folder(Path(hf_model))
    if type(hf_model).__name__ != "LlamaForCausalLM":
        raise TypeError(f"import_hf takes a LlamaForCausalLM or a folder holding one, got {type(hf_model).__name__}")
    c = hf_model.config
    check_llama_config(c)
    cfg = TotoConfig(vocab_size=c.vocab_size, block_size=c.max_position_embeddings, n_layer=c.num_hidden_layers,
                     n_head=c.num_attention_heads, n_embd=c.hidden_size, mlp_hidden=c.intermediate_size,
                     n_kv_head=0 if (c.num_key_value_heads or c.num_attention_heads) == c.num_attention_heads else c.num_key_value_heads,
                     rope_base=_rope_theta(c), norm_eps=c.rms_norm_eps, tie_embeddings=bool(c.tie_word_embeddings),
                     dropout=float(getattr(c, "attention_dropout", 0.0) or 0.0), **config_overrides)
    model = Toto(cfg)
    hsd = {k: v.float() for k, v in hf_model.state_dict().items()}
    sd = {"tok_emb.weight": hsd["model.embed_tokens.weight"], "norm.weight": hsd["model.norm.weight"]}
    if not cfg.tie_embeddings:
        sd["head.weight"] = hsd["lm_head.weight"]
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            sd[f"layers.{i}.{ours}"] = hsd[f"model.layers.{i}.{theirs}"]
        sd[f"layers.{i}.attn.wqkv.weight"] = torch.cat([hsd[f"model.layers.{i}.{n}"] for n in _QKV])
        sd[f"layers.{i}.mlp.w13.weight"] = torch.cat([hsd[f"model.layers.{i}.{n}"] for n in _GATE_UP])
    model.load_weights(sd, source="LlamaForCausalLM")
    return model


def _load_folder(path: Path):
    """A ``LlamaForCausalLM`` from a local Hugging Face folder; the config is checked before any weight is read."""
    from transformers import AutoConfig, LlamaForCausalLM

    if not (path / "config.json").is_file():
        raise InputNotFoundError(f"{path} is not a Hugging Face model folder (no config.json)")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    check_llama_config(config)
    return LlamaForCausalLM.from_pretrained(path, local_files_only=True).eval()

"""Export to / import from Hugging Face ``LlamaForCausalLM`` (same math: RMSNorm, SwiGLU, rotate-half RoPE)."""
from __future__ import annotations

import torch

from toto_robot.model.toto import Toto, TotoConfig

# ours -> HF, per layer
_LAYER_MAP = {
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp.w1.weight": "mlp.gate_proj.weight",
    "mlp.w3.weight": "mlp.up_proj.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
    "norm1.weight": "input_layernorm.weight",
    "norm2.weight": "post_attention_layernorm.weight",
}


def hf_config(cfg: TotoConfig):
    from transformers import LlamaConfig

    if cfg.input_dim:
        raise ValueError("only discrete-token Toto models have a LlamaForCausalLM equivalent")
    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.mlp_hidden,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base}, attention_bias=False, mlp_bias=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def to_hf_state_dict(model: Toto) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"], "model.norm.weight": sd["norm.weight"], "lm_head.weight": sd["head.weight"]}
    for i in range(model.config.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            out[f"model.layers.{i}.{theirs}"] = sd[f"layers.{i}.{ours}"]
    return out


def export_hf(model: Toto):
    """A ``LlamaForCausalLM`` holding this model's weights."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(hf_config(model.config)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and model.config.tie_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"HF export mismatch: missing {missing}, unexpected {unexpected}")
    return hf


def import_hf(hf_model, **config_overrides) -> Toto:
    """A Toto built from a ``LlamaForCausalLM`` (multi-query/grouped attention is not supported)."""
    c = hf_model.config
    if c.num_key_value_heads != c.num_attention_heads:
        raise ValueError("grouped-query attention checkpoints are not supported")
    rope = (getattr(c, "rope_parameters", None) or {}).get("rope_theta", getattr(c, "rope_theta", 10_000.0))
    cfg = TotoConfig(vocab_size=c.vocab_size, block_size=c.max_position_embeddings, n_layer=c.num_hidden_layers,
                     n_head=c.num_attention_heads, n_embd=c.hidden_size, mlp_hidden=c.intermediate_size,
                     rope_base=rope, norm_eps=c.rms_norm_eps, tie_embeddings=bool(c.tie_word_embeddings), **config_overrides)
    model = Toto(cfg)
    hsd = hf_model.state_dict()
    sd = {"tok_emb.weight": hsd["model.embed_tokens.weight"], "norm.weight": hsd["model.norm.weight"]}
    if not cfg.tie_embeddings:
        sd["head.weight"] = hsd["lm_head.weight"]
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_MAP.items():
            sd[f"layers.{i}.{ours}"] = hsd[f"model.layers.{i}.{theirs}"]
    model.load_weights(sd, source="LlamaForCausalLM")
    return model

"""Hugging Face LlamaForCausalLM interop: identical logits both ways, folders, GQA, clear refusals."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from toto_robot.model import Toto, TotoConfig  # noqa: E402
from toto_robot.model.hf import UnsupportedConfigError, export_hf, import_hf  # noqa: E402

BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
            bos_token_id=None, eos_token_id=None, pad_token_id=None)


def llama(**kw) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**{**BASE, **kw})).eval()


def logits(model, x):
    with torch.no_grad():
        out = model(x)
        return out.logits if hasattr(out, "logits") else out[0]


@pytest.mark.parametrize("kw", [{}, {"num_key_value_heads": 2}, {"num_key_value_heads": 1, "tie_word_embeddings": True},
                                {"rope_parameters": {"rope_type": "default", "rope_theta": 500_000.0}}])
def test_import_reproduces_llama_logits_including_grouped_query_attention(kw):
    hf = llama(**kw)
    toto = import_hf(hf).eval()
    x = torch.randint(0, 96, (2, 40))
    torch.testing.assert_close(logits(toto, x), logits(hf, x), atol=1e-5, rtol=0)
    assert toto.config.kv_heads == hf.config.num_key_value_heads


def test_export_writes_a_folder_that_transformers_and_import_read(tmp_path):
    torch.manual_seed(0)
    m = Toto(TotoConfig.from_name("toto_tiny", n_layer=2, n_kv_head=2)).eval()
    x = torch.randint(0, m.config.vocab_size, (1, 30))
    export_hf(m, tmp_path / "hf")
    assert (tmp_path / "hf" / "config.json").is_file()
    torch.testing.assert_close(logits(LlamaForCausalLM.from_pretrained(tmp_path / "hf"), x), logits(m, x), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(import_hf(tmp_path / "hf"), x), logits(m, x), atol=1e-5, rtol=0)
    with pytest.raises(FileExistsError, match="already exists"):
        export_hf(m, tmp_path / "hf")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        import_hf(tmp_path)


@pytest.mark.parametrize("kw,field", [
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}}, "rope_(parameters|scaling)"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_(parameters|scaling)"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 32, "rope_theta": 10000.0}}, "rope_(parameters|scaling)"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"head_dim": 32}, "head_dim"),
])
def test_settings_toto_does_not_implement_are_refused_by_name(kw, field, tmp_path):
    hf = llama(**kw)
    with pytest.raises(UnsupportedConfigError, match=field):
        import_hf(hf)
    hf.save_pretrained(tmp_path / "f")
    with pytest.raises(UnsupportedConfigError, match=field):  # a folder is refused before its weights are read
        import_hf(tmp_path / "f")


def test_unknown_config_fields_are_refused():
    hf = llama()
    hf.config.sliding_window = 16
    with pytest.raises(UnsupportedConfigError, match="sliding_window"):
        import_hf(hf)
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        import_hf(torch.nn.Linear(2, 2))

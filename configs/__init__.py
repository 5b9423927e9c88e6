"""Hydra configuration tree for toto_robot (groups mirror the code: model, tokenizer, data, task, encoder, policy)."""

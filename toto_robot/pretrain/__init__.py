"""Next-token pre-training of Toto on token shards (single process, DDP or FSDP2 under torchrun)."""

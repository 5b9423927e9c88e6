"""Data: video decoding, clip sampling, token sequences, shards, mixtures and demonstrations."""

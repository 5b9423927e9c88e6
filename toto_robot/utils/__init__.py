"""Small shared helpers: atomic file writes and safetensors checkpoints."""

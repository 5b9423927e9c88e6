"""Frozen visual encoders behind one interface: Toto, MAE/MVP ViTs and a random-init control."""

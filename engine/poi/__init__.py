"""Proof of Inference: the pure validation rules and the validator on real models."""

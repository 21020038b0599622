"""Pretrained sources (local, HF cache, packaged) and the classifier built on a backbone."""

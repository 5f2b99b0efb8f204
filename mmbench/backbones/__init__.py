"""Encoders shared by all methods; a dataset's ``backbones()`` picks them."""

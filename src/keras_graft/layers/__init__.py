"""Layers, losses and metrics written as functions of TF ops."""

"""sfnet: Sparse Feature Networks for interpretable galaxy-property regression.

Implements Wu (2025), "Insights on Galaxy Evolution from Interpretable Sparse Feature
Networks": a resnet18 whose 512 pooled features pass through a top-k layer before a
linear head, so that every prediction is a linear equation of k image features.
"""

__version__ = "0.1.0"

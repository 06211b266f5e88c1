"""Analyses of trained runs: equations, ground truth, PCA, AGN, probes."""

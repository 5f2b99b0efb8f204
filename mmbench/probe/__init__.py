"""Uniform linear probes and imbalance scores of finished runs.

``recipe``: the one probe recipe, hashed; ``linear``: fitting one probe; ``shapley``: exact
Shapley contributions of the modalities to the fused prediction; ``run``: probing one run
directory into ``probe.json`` (and every run below a results root).
"""

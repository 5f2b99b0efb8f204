"""Speed measurement (``mmbench bench``): step time of methods (``steps``), samples/s of a
dataset's data paths (``data``) and run-time estimates from measured figures (``estimate``).
Above the harness: it drives ``mmbench.benchmark`` and is never imported by it."""

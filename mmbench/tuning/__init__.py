"""Equal-budget hyper-parameter tuning (``mmbench tune``): search spaces declared beside the
defaults, a plan that is a pure function of (space, study seed, index), K-fold validation inside
train ∪ val (test never used), Optuna as ledger and sampler, final runs with fresh seeds, the
default-vs-tuned table and the expected-best-vs-budget curve (Dodge et al. 2019)."""

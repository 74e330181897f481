"""Training utilities: teacher data, pointwise distillation, explanation SFT, reward refinement.

Each step is a command, ``python -m reasonrank.train.<step> --config FILE.yaml``, and needs the ``train`` extra
(``trl``, ``datasets``, ``accelerate``). Nothing in ``reasonrank`` outside this package imports it.
"""

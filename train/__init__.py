"""SR Studio trainer: ``accelerate launch train/train.py --config train/configs/srresnet_x4.yaml``.

``train`` is a package installed with ``sr_core`` and ``sr_app`` (``pip install -e .``), so ``import train.config``
needs no ``sys.path`` edits. Its scripts (``train.py``, ``export_weights.py``, ``compare_models.py``) also run by
path as the README writes them; Python then puts ``train/`` itself first on ``sys.path``, where ``train.py`` would
hide this package, so each script, and only when run by path, swaps that entry for the repository root.
"""

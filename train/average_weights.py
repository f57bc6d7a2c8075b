"""Average the weights of models fine-tuned from one parent into a new save_pretrained folder (a model soup,
Wortsman et al. 2022): runs that each pushed a different degradation share one set of weights.

    python train/average_weights.py runs/a/best runs/b/last --weights 0.7 0.3 --out runs/soup/best

The models must share an architecture and config; floating-point tensors are averaged with the given weights
(normalised to sum to 1), integer ones (BatchNorm's batch counters) are taken from the first model.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by path (`python train/average_weights.py`): see train/__init__.py
    _ROOT = Path(__file__).resolve().parents[1]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "train"]
    sys.path.insert(0, str(_ROOT))

import argparse
from collections.abc import Sequence

from sr_core.errors import SRError
from sr_core.models import SRModel, build_model, load_pretrained


def average_models(models: Sequence[SRModel], weights: Sequence[float]) -> SRModel:
    """A model of ``models[0]``'s config holding the ``weights``-weighted mean of the models' floating-point
    tensors."""
    if len(models) < 2 or len(weights) != len(models):
        raise ValueError(f"need two or more models and one weight each, got {len(models)} and {len(weights)}")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
    configs = [m.config_dict() for m in models]  # the architecture's name included
    if any(c != configs[0] for c in configs):
        raise ValueError("the models differ in architecture or config; only models of one lineage can be averaged")
    total = float(sum(weights))
    states = [m.state_dict() for m in models]
    averaged = {
        key: sum(s[key].double() * (w / total) for s, w in zip(states, weights, strict=True)).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in states[0].items()
    }
    soup = build_model(configs[0])
    soup.load_state_dict(averaged)
    return soup  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="save_pretrained folders (a run's best/ or last/)")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one per model (default: equal)")
    p.add_argument("--out", type=Path, required=True, help="folder for the averaged model")
    args = p.parse_args(argv)
    weights = args.weights or [1.0] * len(args.models)
    try:
        soup = average_models([load_pretrained(m) for m in args.models], weights)  # type: ignore[misc]
    except (SRError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    soup.save_pretrained(args.out)
    print(f"averaged {len(args.models)} models with weights {weights}: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Model cards: the Hub's YAML front matter (library, task, tags, licence, datasets, PSNR/SSIM ``model-index``) and
a body that says what the model is, how it was trained and how to use it (CLI, Python, app, spandrel, ONNX).

``save_pretrained`` writes one per folder (:func:`build_card`); the shipped weights folder gets one front matter
for all its models from ``manifest.json`` (:func:`front_matter`, used by ``sr_core.registry.write_weights_card``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index

from ..errors import WeightsError

LIBRARY_NAME = "sr-studio"
LICENSE = "apache-2.0"
PIPELINE_TAG = "image-to-image"
PLACEHOLDER_ID = "path/to/this/folder"
"""What the usage examples name when the card is written for a local folder rather than a Hub repo."""
EVAL_DATASET_TYPE = "imagefolder"
"""The ``model-index`` dataset type of a local folder of images (Hub datasets are named by their id)."""
_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n?", re.DOTALL)

TRAINING_FIELDS = (
    ("stage", "stage"),
    ("steps", "optimiser steps"),
    ("init_from", "started from"),
    ("data", "training data"),
    ("ema_decay", "EMA decay"),
    ("wall_time_hours", "wall time (hours)"),
    ("hardware", "hardware"),
    ("command", "command"),
    ("notes", "notes"),
)

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

| | |
| --- | --- |
| architecture | `{{ architecture }}`{% if paper_url %} ([paper]({{ paper_url }})){% endif %} |
| configuration | `{{ config_json }}` |
| parameters | {{ parameters }} |
{% if scale %}| scale | x{{ scale }} (RGB in [0, 1], linear output) |
{% endif %}| files | `config.json` + `model.safetensors` (safetensors: no pickles) |
| library | [SR Studio](#how-to-use) (`{{ library_name }}`) |
{% if scale %}
## How to use

With SR Studio installed (`pip install -e .` in its repository). A Hub id is fetched once into the Hugging Face
cache and then works offline; a local folder works the same way.

```bash
sr-upscale photo.png --method {{ model_id }} --scale {{ scale }}
python app.py --model {{ model_id }}
```

The first writes `results/photo_{{ model_name }}_x{{ scale }}.png`; the second starts the Gradio app with this model
among its methods.

```python
import sr_core
from sr_core.models import load_pretrained

out = sr_core.upscale("photo.png", method="{{ model_id }}", scale={{ scale }})
out.save("photo_x{{ scale }}.png")
model = load_pretrained("{{ model_id }}")  # the {{ architecture }} itself, in eval mode
```

chaiNNer and ComfyUI load models through [spandrel](https://github.com/chaiNNer-org/spandrel): after
`import sr_core.interop.spandrel` (`pip install "sr-studio[spandrel]"`), `spandrel.ModelLoader().load_from_file(
"model.safetensors")` loads this file. For ONNX runtimes (chaiNNer's ONNX nodes among them):
`python -m sr_core.export onnx --method {{ model_id }} --scale {{ scale }} -o model.onnx`.
{% else %}
## How to use

Not an upscaler: the SRGAN discriminator (logits for RGB inputs of 32x32 or more), kept to resume or extend
adversarial training.

```python
from sr_core.models import load_pretrained
discriminator = load_pretrained("{{ model_id }}")  # the {{ architecture }}, in eval mode
```
{% endif %}
## Training
{% if training_rows %}
| | |
| --- | --- |
{% for label, value in training_rows %}| {{ label }} | {{ value }} |
{% endfor %}{% if training_config %}
<details><summary>full training configuration</summary>

```yaml
{{ training_config }}```

</details>
{% endif %}{% else %}
Not recorded.
{% endif %}
## Evaluation
{% if evaluation_rows %}
| method | PSNR (dB) | SSIM |
| --- | ---: | ---: |
{% for name, p, s in evaluation_rows %}| {{ name }} | {{ p }} | {{ s }} |
{% endfor %}
{{ evaluation_note }}
{% else %}
Not evaluated yet{% if scale %}: `python -m sr_core.evaluate --method {{ model_id }} --scale {{ scale }} --data DIR`
scores it against bicubic{% endif %}.
{% endif %}
## License

Apache-2.0.
"""


@dataclass(frozen=True)
class ModelFacts:
    """What a card states about the model itself."""

    architecture: str
    config: Mapping[str, Any]
    parameters: int
    scale: int | None
    card_data: ModelCardData
    paper_url: str | None = None


def _cell(value: Any) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def training_rows(training: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) rows of the training facts that are known, in a fixed order."""
    if not training:
        return []
    rows = []
    for key, label in TRAINING_FIELDS:
        value = training.get(key)
        if value not in (None, "", [], {}):
            rows.append((label, f"`{_cell(value)}`" if key == "command" else _cell(value)))
    return rows


def _score(value: Any, digits: int) -> str:
    return f"{float(value):.{digits}f}" if isinstance(value, (int, float)) else ""


def evaluation_rows(evaluation: Mapping[str, Any] | None, title: str) -> list[tuple[str, str, str]]:
    """(method, PSNR, SSIM) rows: this model and bicubic on clean LR, then each recorded degradation."""
    if not evaluation or "psnr" not in evaluation:
        return []
    rows = [(f"**{title}**", _score(evaluation["psnr"], 2), _score(evaluation.get("ssim"), 4))]
    if "bicubic_psnr" in evaluation:
        rows.append(("bicubic", _score(evaluation["bicubic_psnr"], 2), _score(evaluation.get("bicubic_ssim"), 4)))
    for spec, scores in dict(evaluation.get("degraded") or {}).items():
        rows.append((f"{title}, LR {spec}", _score(scores.get("psnr"), 2), _score(scores.get("ssim"), 4)))
        if "bicubic_psnr" in scores:
            rows.append(
                (f"bicubic, LR {spec}", _score(scores["bicubic_psnr"], 2), _score(scores.get("bicubic_ssim"), 4))
            )
    return rows


def eval_results(evaluation: Mapping[str, Any] | None, scale: int | None) -> list[EvalResult] | None:
    """PSNR and SSIM as the Hub's ``model-index`` entries, or None when the model was not evaluated."""
    if not evaluation or "psnr" not in evaluation:
        return None
    count = evaluation.get("num_images")
    data = evaluation.get("dataset_name") or evaluation.get("data") or "validation images"
    common = {
        "task_type": PIPELINE_TAG,
        "task_name": f"Image super-resolution x{scale}" if scale else "Image super-resolution",
        "dataset_type": evaluation.get("dataset_id") or EVAL_DATASET_TYPE,
        "dataset_name": f"{data} ({count} images)" if count else str(data),
        "dataset_split": "validation",
    }
    results = [
        EvalResult(
            metric_type="psnr", metric_name="PSNR (Y channel, dB)", metric_value=float(evaluation["psnr"]), **common
        )
    ]
    if "ssim" in evaluation:
        results.append(
            EvalResult(
                metric_type="ssim", metric_name="SSIM (Y channel)", metric_value=float(evaluation["ssim"]), **common
            )
        )
    return results


def card_data(
    base: ModelCardData,
    *,
    model_name: str,
    scale: int | None,
    evaluation: Mapping[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    base_model: str | None = None,
) -> ModelCardData:
    """The class's card data (library, task, tags, licence) plus this model's datasets, base model and metrics."""
    data = ModelCardData(**base.to_dict())
    data.datasets = list(datasets) if datasets else None
    data.base_model = base_model
    results = eval_results(evaluation, scale)
    if results:
        data.model_name, data.eval_results = model_name, results
    return data


def build_card(
    facts: ModelFacts,
    *,
    model_id: str | None = None,
    title: str | None = None,
    description: str = "",
    training: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    base_model: str | None = None,
) -> ModelCard:
    """The model card of one saved model (front matter + body); every argument is optional."""
    import json

    scale_text = f" x{facts.scale}" if facts.scale else ""
    title = title or (model_id.split("/")[-1] if model_id else f"SR Studio {facts.architecture}{scale_text}")
    data = card_data(
        facts.card_data, model_name=title, scale=facts.scale, evaluation=evaluation, datasets=datasets,
        base_model=base_model,
    )  # fmt: skip
    config = (training or {}).get("config")
    note = ""
    if evaluation and "psnr" in evaluation:
        note = (
            f"{evaluation.get('convention') or 'PSNR/SSIM'}; {evaluation.get('num_images', '?')} images "
            f"(`{evaluation.get('data', '?')}`), scored with `sr_core.evaluate`."
        )
    return ModelCard.from_template(
        data,
        template_str=CARD_TEMPLATE,
        title=title,
        description=description or default_description(facts),
        architecture=facts.architecture,
        paper_url=facts.paper_url,
        config_json=json.dumps(dict(facts.config)),
        parameters=f"{facts.parameters:,}",
        scale=facts.scale,
        model_id=model_id or PLACEHOLDER_ID,
        model_name=(model_id or PLACEHOLDER_ID).rstrip("/").split("/")[-1],
        training_rows=training_rows(training),
        training_config=yaml.safe_dump(dict(config), sort_keys=False) if isinstance(config, Mapping) and config else "",
        evaluation_rows=evaluation_rows(evaluation, title),
        evaluation_note=note,
    )


def default_description(facts: ModelFacts) -> str:
    """One line for a card written without a description."""
    if facts.scale:
        return f"An SR Studio {facts.architecture} that upscales RGB images x{facts.scale}."
    return f"An SR Studio {facts.architecture}."


@dataclass(frozen=True)
class CardEntry:
    """One model of a folder that ships several (the weights folder), as its shared front matter lists it."""

    card_data: ModelCardData
    name: str
    scale: int
    evaluation: Mapping[str, Any] | None = None
    datasets: Sequence[str] = ()


def front_matter(entries: Iterable[CardEntry]) -> dict[str, Any]:
    """One front matter for several models: common fields, the union of tags and datasets, every model's metrics."""
    merged: dict[str, Any] = {}
    tags: set[str] = set()
    datasets: list[str] = []
    index: list[dict[str, Any]] = []
    for entry in entries:
        for key, value in entry.card_data.to_dict().items():
            merged.setdefault(key, value)
        tags.update(entry.card_data.tags or [])
        datasets += [d for d in entry.datasets if d not in datasets]
        results = eval_results(entry.evaluation, entry.scale)
        if results:
            index += eval_results_to_model_index(entry.name, results)
    if not merged:
        raise WeightsError("No models to describe in the front matter")
    merged["tags"] = sorted(tags)
    for key in ("model-index", "datasets", "model_name", "eval_results"):
        merged.pop(key, None)
    if datasets:
        merged["datasets"] = datasets
    if index:
        merged["model-index"] = index
    return merged


def replace_front_matter(text: str, data: Mapping[str, Any]) -> str:
    """``text`` (a README) with its YAML front matter replaced by ``data`` (added when it had none)."""
    block = "---\n" + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True) + "---\n"
    body = _FRONT_MATTER.sub("", text, count=1)
    return block + ("\n" if body and not body.startswith("\n") else "") + body

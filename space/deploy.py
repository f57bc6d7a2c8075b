"""Assemble the SR Studio Hugging Face Space and upload it.

    python space/deploy.py --repo-id USER/NAME [--private]     # build in a temp folder and upload
    python space/deploy.py --dry-run DIR [--repo-id USER/NAME]  # only write the folder
    ... [--hardware cpu-basic|cpu-upgrade|t4-small|a10g-small|zero-a10g|...] [--model USER/NAME ...]

The folder holds app.py, sr_app/, sr_core/ (with its bundled weights), the sample photos, this folder's README.md
(the Space's front matter: Gradio comes from ``sdk_version``; ``--model`` ids are added as ``models:``), a
requirements.txt with the torch build for ``--hardware`` (CPU hardware gets the CPU wheel, not ~5.5 GB of CUDA
wheels) and a .gitattributes that routes binary files (weights, images) to LFS/Xet. The token comes from
``--token``, ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent
PACKAGES = ("sr_app", "sr_core")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*", "*.tmp")
DEFAULT_HARDWARE = "cpu-basic"
HARDWARE = (
    "cpu-basic", "cpu-upgrade", "zero-a10g", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
    "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8", "rtx-pro-6000",
    "rtx-pro-6000x2", "rtx-pro-6000x4", "rtx-pro-6000x8",
)  # fmt: skip
"""Space hardware names (huggingface_hub.SpaceHardware); ``cpu-*`` run the CPU torch build, the rest CUDA."""
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
BINARY_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5", "*.msgpack", "*.npy", "*.npz",
    "*.pkl", "*.pickle", "*.joblib", "*.db", "*.sqlite", "*.parquet", "*.arrow", "*.zip", "*.tar", "*.tar.*",
    "*.tgz", "*.gz", "*.xz", "*.zst", "*.7z", "*.png", "*.jpg", "*.jpeg", "*.webp", "*.gif", "*.bmp", "*.tif",
    "*.tiff", "*.ico", "*.mp4", "*.wav", "*tfevents*",
)  # fmt: skip
"""Files routed to LFS/Xet in the Space's .gitattributes (the Hub's defaults plus the images this app ships)."""
MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DeployError(Exception):
    """A deployment step failed; the message is one line for the user."""


def _check_weights(target: Path) -> list[str]:
    """Names of the weights files the bundled manifest lists but the folder lacks."""
    manifest = target / "sr_core" / "weights" / "manifest.json"
    if not manifest.is_file():
        return []
    try:
        entries = json.loads(manifest.read_text()).get("models", [])
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise DeployError(f"{manifest} is not a readable weights manifest ({exc})") from exc
    return [e.get("file", "?") for e in entries if not (manifest.parent / str(e.get("file", ""))).is_file()]


def is_cpu(hardware: str) -> bool:
    """Whether the Space hardware has no GPU (``cpu-basic``, ``cpu-upgrade``); ZeroGPU counts as a GPU."""
    return hardware.startswith("cpu-")


def requirements_for(hardware: str, base: str) -> str:
    """The Space's requirements.txt: ``base`` with its ``torch==X`` pin turned into the CPU build on CPU hardware.

    PyPI's Linux torch wheel is the CUDA build (plus about 5.5 GB of nvidia-* wheels). Spaces install with
    ``pip install -r requirements.txt``, and pip honours index options written in that file, so CPU hardware gets
    ``--extra-index-url`` for PyTorch's CPU index and the pin ``torch==X+cpu``: that local version exists only on
    the CPU index, so pip cannot fall back to the CUDA wheel, while every other package still comes from PyPI.
    """
    lines = base.splitlines()
    pins = [i for i, line in enumerate(lines) if re.match(r"^torch==[\w.]+\s*(#.*)?$", line.strip())]
    if len(pins) != 1:
        raise DeployError("space/requirements.txt must pin torch exactly once, as torch==VERSION")
    if is_cpu(hardware):
        version = lines[pins[0]].split("==", 1)[1].split("#", 1)[0].strip()
        lines[pins[0] : pins[0] + 1] = [
            f"# {hardware} has no GPU: the CPU build of torch from PyTorch's index (not PyPI's CUDA build).",
            f"--extra-index-url {CPU_TORCH_INDEX}",
            f"torch=={version}+cpu",
        ]
    return "\n".join(lines) + "\n"


def gitattributes() -> str:
    """A .gitattributes that stores every binary file of the Space in LFS/Xet instead of plain git."""
    header = "# Binary files go to LFS/Xet (written by space/deploy.py)."
    return "\n".join([header, *(f"{p} filter=lfs diff=lfs merge=lfs -text" for p in BINARY_PATTERNS)]) + "\n"


def readme_for(readme: str, *, models: Sequence[str] = ()) -> str:
    """The Space's README: this folder's, with the hub ``models`` it uses listed under ``models:``."""
    if not models:
        return readme
    if not readme.startswith("---\n") or "\n---\n" not in readme[3:]:
        raise DeployError("space/README.md must start with a --- front matter block")
    end = readme.index("\n---\n", 3) + 1
    return readme[:end] + "\n".join(["models:", *(f"  - {m}" for m in models)]) + "\n" + readme[end:]


def assemble(
    target: str | Path,
    *,
    repo_root: Path = REPO_ROOT,
    space_dir: Path = SPACE_DIR,
    hardware: str = DEFAULT_HARDWARE,
    models: Sequence[str] = (),
) -> list[Path]:
    """Write the Space into ``target`` (new or empty folder) for ``hardware``, linking the hub ``models``;
    returns the files written, relative to it."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DeployError(f"{target} already exists and is not an empty folder; choose a new one")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("app.py",):
        shutil.copy2(repo_root / name, target / name)
    for package in PACKAGES:
        if not (repo_root / package / "__init__.py").is_file():
            raise DeployError(f"{repo_root / package} is not a Python package")
        shutil.copytree(repo_root / package, target / package, ignore=IGNORED)
    examples = repo_root / "examples"
    if examples.is_dir():
        (target / "examples").mkdir()
        for path in sorted(examples.iterdir()):
            if path.suffix.lower() == ".png" or path.name in ("README.md", "LICENSE"):
                shutil.copy2(path, target / "examples" / path.name)
    readme = readme_for((space_dir / "README.md").read_text(encoding="utf-8"), models=models)
    (target / "README.md").write_text(readme, encoding="utf-8")
    requirements = requirements_for(hardware, (space_dir / "requirements.txt").read_text(encoding="utf-8"))
    (target / "requirements.txt").write_text(requirements, encoding="utf-8")
    (target / ".gitattributes").write_text(gitattributes(), encoding="utf-8")
    if (repo_root / "LICENSE").is_file():
        shutil.copy2(repo_root / "LICENSE", target / "LICENSE")
    missing = _check_weights(target)
    if missing:
        raise DeployError(f"sr_core/weights/manifest.json lists files that are missing: {', '.join(missing)}")
    return sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _describe_failure(exc: BaseException) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so the Hugging Face Hub cannot be reached; unset it and retry"
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return f"the Hub refused the token (HTTP {status}); check HF_TOKEN or run `hf auth login`"
        return f"the Hub answered with an error ({_one_line(exc)})"
    return f"cannot reach the Hugging Face Hub (offline?): {_one_line(exc)}"


def upload(
    folder: Path, repo_id: str, *, private: bool = False, token: str | None = None, message: str = "Deploy SR Studio"
) -> str:
    """Create the Space if needed and upload ``folder`` to it; returns the Space's URL."""
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise DeployError("no Hugging Face token: set HF_TOKEN, pass --token or run `hf auth login`")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder), commit_message=message)
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(f"upload to Space {repo_id} failed: {_describe_failure(exc)}") from exc
    return f"https://huggingface.co/spaces/{repo_id}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Assemble the SR Studio Space and upload it to Hugging Face.")
    parser.add_argument("--repo-id", help="the Space, as USER/NAME (required unless --dry-run)")
    parser.add_argument("--dry-run", metavar="DIR", help="only write the Space folder to DIR (new or empty)")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or the saved login)")
    parser.add_argument("--message", default="Deploy SR Studio", help="commit message")
    parser.add_argument(
        "--hardware",
        default=DEFAULT_HARDWARE,
        metavar="NAME",
        help="the Space's hardware, for the torch build in requirements.txt: cpu-basic or cpu-upgrade get the CPU "
        "build, GPUs (t4-small, a10g-small, ...) and ZeroGPU (zero-a10g) the CUDA build (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="USER/NAME",
        help="a hub model the Space uses, listed under models: in its front matter (repeatable)",
    )
    return parser


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, or None."""
    if args.repo_id and args.repo_id.count("/") != 1:
        return f"--repo-id must look like USER/NAME, got {args.repo_id!r}"
    if args.hardware not in HARDWARE:
        return f"--hardware {args.hardware!r} is not a Space hardware; choose one of: {', '.join(HARDWARE)}"
    bad = [m for m in args.model if not MODEL_ID.match(m)]
    if bad:
        return f"--model must look like USER/NAME (a hub model id), got {bad[0]!r}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("--repo-id USER/NAME is required (or --dry-run DIR to only write the folder)")
    problem = usage_problem(args)
    if problem:
        parser.error(problem)
    options = {"hardware": args.hardware, "models": tuple(dict.fromkeys(args.model))}
    try:
        if args.dry_run:
            files = assemble(args.dry_run, **options)
            print(f"Wrote the Space ({len(files)} files, for {args.hardware}) to {Path(args.dry_run).resolve()}")
            return 0
        with tempfile.TemporaryDirectory(prefix="sr_studio_space_") as tmp:
            folder = Path(tmp) / "space"
            files = assemble(folder, **options)
            url = upload(folder, args.repo_id, private=args.private, token=args.token, message=args.message)
        print(f"Uploaded {len(files)} files to {url}")
        if args.hardware != DEFAULT_HARDWARE:
            print(f"Pick {args.hardware} in the Space's settings: its requirements are built for it.")
        return 0
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Assemble the SR Studio Hugging Face Space and upload it.

    python space/deploy.py --repo-id USER/NAME [--private]     # build in a temp folder and upload
    python space/deploy.py --dry-run DIR [--repo-id USER/NAME]  # only write the folder

The folder holds app.py, sr_app/, sr_core/ (with its bundled weights), the sample photos, this folder's README.md
(the Space's front matter: Gradio comes from ``sdk_version``) and requirements.txt. The token comes from
``--token``, ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent
PACKAGES = ("sr_app", "sr_core")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*", "*.tmp")


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


def assemble(target: str | Path, *, repo_root: Path = REPO_ROOT, space_dir: Path = SPACE_DIR) -> list[Path]:
    """Write the Space into ``target`` (new or empty folder); returns the files written, relative to it."""
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
    shutil.copy2(space_dir / "README.md", target / "README.md")
    shutil.copy2(space_dir / "requirements.txt", target / "requirements.txt")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("--repo-id USER/NAME is required (or --dry-run DIR to only write the folder)")
    if args.repo_id and args.repo_id.count("/") != 1:
        parser.error(f"--repo-id must look like USER/NAME, got {args.repo_id!r}")
    try:
        if args.dry_run:
            files = assemble(args.dry_run)
            print(f"Wrote the Space ({len(files)} files) to {Path(args.dry_run).resolve()}")
            return 0
        with tempfile.TemporaryDirectory(prefix="sr_studio_space_") as tmp:
            folder = Path(tmp) / "space"
            files = assemble(folder)
            url = upload(folder, args.repo_id, private=args.private, token=args.token, message=args.message)
        print(f"Uploaded {len(files)} files to {url}")
        return 0
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The Hugging Face Hub, for models: recognise hub ids, fetch a model's files into the Hub cache, publish a folder.

Every Hub failure becomes one :class:`~sr_core.errors.SRError` sentence naming the repo and saying what to do:
:class:`OfflineError` when the Hub cannot be reached (and the files are not cached), :class:`WeightsError` when it
answers that the repo, revision or file does not exist or may not be written. Files are fetched once into the
Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``); after that they load offline.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import OfflineError, SRError, WeightsError

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]*[A-Za-z0-9_]")
"""``user/name`` as the Hub spells model ids (no revision, no sub-folder)."""


def is_hub_id(name: str | os.PathLike) -> bool:
    """Whether ``name`` reads as a Hub model id ``user/name`` and is not a path that exists here."""
    text = os.fspath(name)
    return bool(HUB_ID.fullmatch(text)) and ".." not in text and not Path(text).exists()


def offline_message(repo_id: str) -> str:
    """The one sentence for a hub id that is neither cached nor reachable."""
    return (
        f"'{repo_id}' is not a local folder, is not in the Hugging Face cache, and the Hub cannot be reached: "
        f"run once with network access (or `hf download {repo_id}`) to cache it, or pass a local folder."
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level exceptions of whichever HTTP client huggingface_hub uses here (and OSError)."""
    found: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


@contextlib.contextmanager
def download_errors(repo_id: str, filename: str = "") -> Iterator[None]:
    """Turn huggingface_hub's download exceptions into one clear SRError naming ``repo_id``."""
    from huggingface_hub import errors as hf

    try:
        yield
    except (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled) as exc:
        raise OfflineError(offline_message(repo_id)) from exc
    except hf.RevisionNotFoundError as exc:
        raise WeightsError(f"The Hugging Face Hub model '{repo_id}' has no such revision.") from exc
    except hf.RepositoryNotFoundError as exc:  # also GatedRepoError
        raise WeightsError(
            f"The Hugging Face Hub has no model '{repo_id}' that this machine may read "
            "(check the id; for a private or gated model run `hf auth login`)."
        ) from exc
    except hf.EntryNotFoundError as exc:
        raise WeightsError(
            f"The Hugging Face Hub model '{repo_id}' has no {filename or 'such file'}, so it is not an SR Studio "
            "model (save_pretrained() writes config.json and model.safetensors)."
        ) from exc
    except hf.HFValidationError as exc:
        raise WeightsError(f"'{repo_id}' is not a valid Hugging Face Hub id ({exc}).") from exc
    except hf.HfHubHTTPError as exc:
        raise WeightsError(f"The Hugging Face Hub refused to serve '{repo_id}': {exc}") from exc
    except _transport_errors() as exc:
        raise OfflineError(offline_message(repo_id)) from exc


def fetch_files(
    repo_id: str,
    filenames: Sequence[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """Fetch ``filenames`` of a Hub model into the Hugging Face cache (a no-op when cached); returns their folder."""
    from huggingface_hub import hf_hub_download

    folder: Path | None = None
    for filename in filenames:
        with download_errors(repo_id, filename):
            path = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
            )
        folder = Path(path).parent
    if folder is None:
        raise ValueError("fetch_files needs at least one file name")
    return folder


def _upload_problem(repo_id: str, folder: Path, exc: BaseException) -> SRError:
    from huggingface_hub import errors as hf

    later = f"upload it later with `hf upload {repo_id} {folder}`"
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return OfflineError(f"Cannot publish to the Hugging Face Hub repo '{repo_id}': HF_HUB_OFFLINE is set; {later}.")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return WeightsError(
                f"The Hugging Face Hub refused to let this machine write '{repo_id}' (HTTP {status}): run "
                f"`hf auth login` with a write token (or set HF_TOKEN), then {later}."
            )
        return WeightsError(f"The Hugging Face Hub refused the upload to '{repo_id}' ({exc}); {later}.")
    return OfflineError(f"Cannot publish to the Hugging Face Hub repo '{repo_id}': the Hub cannot be reached; {later}.")


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload SR Studio model",
) -> str:
    """Create the Hub model repo ``repo_id`` if needed and upload ``folder`` as one commit; returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    folder = Path(folder)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    except (hf.HfHubHTTPError, hf.OfflineModeIsEnabled, *_transport_errors()) as exc:
        raise _upload_problem(repo_id, folder, exc) from exc
    except hf.HFValidationError as exc:
        raise WeightsError(f"'{repo_id}' is not a valid Hugging Face Hub id ({exc}).") from exc
    return str(getattr(info, "commit_url", info))

"""Uploading a finished run to the Hugging Face Hub (its task folders, model cards, config.json and logs; not its
checkpoints)."""

from __future__ import annotations

from ..utils.errors import RunError
from ..utils.logging import get_logger

logger = get_logger(__name__)
# What a Hub upload of a run leaves out: resumable checkpoints and half-written or half-deleted folders.
HUB_IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.tmp", "*.tmp/**", "*.trash", "*.trash/**"]


def push_to_hub(output_dir: str, repo_id: str, private: bool | None = None, api=None) -> str:
    """Upload a run (its task folders, model cards, config.json and logs; not its checkpoints) to the Hub repo
    `repo_id`, created when missing. `api`: an `huggingface_hub.HfApi` (default a new one, with the token of
    `huggingface-cli login` / HF_TOKEN). Returns the repo id; raises `RunError` when the upload fails."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        repo = api.create_repo(repo_id, exist_ok=True, private=private)
        repo_id = getattr(repo, "repo_id", repo_id)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            ignore_patterns=HUB_IGNORE,
            commit_message="Upload continual-diffusers run",
        )
    except Exception as err:  # network, token, permissions: one line, the run itself is complete on disk
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        message = f"push to the Hub repo {repo_id} failed ({reason}); the run is complete in {output_dir}"
        raise RunError(message) from err
    logger.info("pushed %s to https://huggingface.co/%s", output_dir, repo_id)
    return repo_id

"""Moved to :mod:`nexus_llm.storage` (kept as aliases while callers move over)."""

from nexus_llm.storage import copy_flat_dir, download_dir, file_sha256, upload_dir
from nexus_llm.storage import replace_local_dir as replace_dir

__all__ = ["copy_flat_dir", "download_dir", "file_sha256", "replace_dir", "upload_dir"]

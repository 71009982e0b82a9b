"""Artefact storage: content-addressed files written once and verified by SHA-256 when read.

Every model and dataset file goes through here. A file's name is its SHA-256, so writing the same bytes
twice stores them once, and a file that changed on disk is refused when loaded.
"""

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.errors import FaroError, PayloadTooLarge

CHUNK = 1024 * 1024


class ArtefactCorrupted(FaroError):
    status_code = 503  # the storage is at fault, not the request: clients may retry once it is repaired


def _root() -> Path:
    return Path(settings.FARO_ARTEFACT_ROOT)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artefact_path(relative: str) -> Path:
    path = (_root() / relative).resolve()
    if _root().resolve() not in path.parents:
        raise ArtefactCorrupted(f"Artefact path {relative!r} leaves the artefact root")
    return path


def _store(kind: str, suffix: str, source: Path, digest: str) -> str:
    relative = f"{kind}/{digest}{suffix}"
    target = artefact_path(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and sha256_file(target) == digest:
        source.unlink(missing_ok=True)
        return relative
    os.chmod(source, 0o444)
    os.replace(source, target)
    return relative


def artefact_write_bytes(kind: str, suffix: str, data: bytes) -> tuple[str, str]:
    """Store `data` as `<kind>/<sha256><suffix>`; return (relative path, sha256)."""
    digest = hashlib.sha256(data).hexdigest()
    directory = _root() / kind
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".incoming-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return _store(kind, suffix, Path(temp), digest), digest


def artefact_write_file(kind: str, suffix: str, source: Path) -> tuple[str, str]:
    """Move a finished temporary file into storage under its SHA-256; return (relative path, sha256)."""
    digest = sha256_file(source)
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    return _store(kind, suffix, source, digest), digest


def artefact_temp_path(kind: str, suffix: str = "") -> Path:
    """A temporary path on the artefact volume, so the final move is an atomic rename."""
    directory = _root() / kind
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".incoming-", suffix=suffix)
    os.close(fd)
    return Path(temp)


def artefact_read_bytes(relative: str, sha256: str) -> bytes:
    """Read an artefact and verify its checksum; raise ArtefactCorrupted on a mismatch or a missing file."""
    path = artefact_path(relative)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtefactCorrupted(f"Artefact {relative} is missing from storage") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtefactCorrupted(f"Artefact {relative} does not match its recorded SHA-256")
    return data


def artefact_verified_path(relative: str, sha256: str) -> Path:
    path = artefact_path(relative)
    if not path.exists():
        raise ArtefactCorrupted(f"Artefact {relative} is missing from storage")
    if sha256_file(path) != sha256:
        raise ArtefactCorrupted(f"Artefact {relative} does not match its recorded SHA-256")
    return path


def upload_stage(upload: Any, *, kind: str) -> tuple[str, str, int]:
    """Copy an upload (chunk by chunk) into artefact storage under `kind`/, synced to disk; return (relative
    path, sha256, size). Beyond FARO_UPLOAD_MAX_BYTES it is refused (413) and nothing is kept."""
    limit = settings.FARO_UPLOAD_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(f"The file is {upload.size} bytes; the limit is {limit}.")
    relative = f"{kind}/{uuid.uuid4().hex}"
    target = artefact_path(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as handle:
        for chunk in upload.chunks():
            size += len(chunk)
            if size > limit:
                handle.close()
                target.unlink(missing_ok=True)
                raise PayloadTooLarge(f"The file exceeds the limit of {limit} bytes.")
            digest.update(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return relative, digest.hexdigest(), size

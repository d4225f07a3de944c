"""The one verified download: a URL streamed into a temporary file beside its target, its sha256 checked, then
renamed into place; and the folder where downloaded weights are kept."""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from qtransfer.errors import ChecksumError, DownloadError, InputError
from qtransfer.storage import content_hash


def checkpoint_dir() -> Path:
    """torch's weight cache, where torchvision keeps its files too: $TORCH_HOME/hub/checkpoints."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def check_sha256(actual: str, expected: str | None, what: str, advice: str) -> None:
    """Refuse `actual` unless it starts with `expected` (a full hash, or the prefix in a canonical file name)."""
    if expected is not None and not actual.startswith(expected):
        full = "" if len(expected) == 64 else "..."
        raise ChecksumError(f"{what} has sha256 {actual}, expected {expected}{full}; {advice}")


def verify_file(path: Path, expected: str | None, what: str | None = None,
                advice: str = "delete it (it will be fetched again) or pass another file") -> str:
    """The file's sha256, after checking it against `expected`."""
    digest = content_hash(path)
    check_sha256(digest, expected, what or f"file {path}", f"it is corrupt or not the published file: {advice}")
    return digest


def download(url: str, target: Path, sha256: str | None, what: str, hint: str, progress: bool = True) -> Path:
    """Fetch `url` to `target`; nothing appears at `target` unless the whole file arrived and matches `sha256`.

    `hint` says what to do without a network (where to put the file by hand)."""
    target = Path(target)
    try:
        request = urllib.request.Request(url)
    except ValueError as err:  # "unknown url type", "Invalid IPv6 URL", ...
        raise InputError(f"cannot download {what} from {url!r}: it is not a URL ({err}); give an http(s):// or "
                         f"file:// URL") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name,
                          disable=not progress, leave=False) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
            raise DownloadError(f"could not download {what} from {url} ({reason}). {hint}") from None
        check_sha256(digest.hexdigest(), sha256, f"{what} downloaded from {url}",
                     "it is corrupt or not the published file, and was not kept; try again")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target

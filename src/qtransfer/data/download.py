"""Registered datasets: archives fetched once, checked file by file against published checksums, unpacked
atomically; or written from a copy bundled with a package (digits)."""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from qtransfer import hub
from qtransfer.data.digits import write_digits
from qtransfer.errors import ChecksumError, InputError, MissingFileError
from qtransfer.registry import Registry, closest
from qtransfer.runtime import cache_root
from qtransfer.storage import file_sha256


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's zip archive lives and how to check what it holds, or what writes it without a download."""

    url: str | None
    folder: str  # the archive's top-level folder, which becomes the dataset root
    sha256: str | None = None  # of the archive at `url`
    manifest: str | None = None  # per-file sha256 list in qtransfer/checksums/, paths relative to `folder`
    generate: Callable[[Path], Path] | None = None  # writes dest/<folder> itself and returns it (no url)


DATASETS: Registry[DatasetSource] = Registry("dataset")
DATASETS["hymenoptera"] = DatasetSource(
    url="https://download.pytorch.org/tutorial/hymenoptera_data.zip",
    folder="hymenoptera_data",
    # As pinned by pytorch/tutorials (.jenkins/download_data.py), whose CI downloads and checks it.
    sha256="fbc41b31d544714d18dd1230b1e2b455e1557766e13e67f9f5a7a23af7c02209",
    manifest="hymenoptera_data.sha256",
)
DATASETS["digits"] = DatasetSource(url=None, folder="digits", generate=write_digits)


def data_folder(data: str | Path, cache_dir: str | Path = "", progress: bool = True) -> Path:
    """The folder `--data` names: a path as given, or a registered dataset's name (hymenoptera, digits), downloaded
    and checked (or written) into the cache's datasets/ folder on first use and checked and reused afterwards."""
    path, name = Path(data), str(data)
    if path.exists():
        return path
    if name in DATASETS:
        return get_dataset(name, datasets_dir(cache_dir), progress=progress)
    guess = closest(name, DATASETS) if len(path.parts) == 1 else None
    if guess:
        raise MissingFileError(f"{name} is neither a folder nor a dataset name; did you mean --data {guess}? "
                               f"(datasets: {', '.join(DATASETS)})")
    return path


def datasets_dir(cache_dir: str | Path = "") -> Path:
    """Where `--data NAME` puts a registered dataset: <cache>/datasets (the cache: --cache-dir, $QTRANSFER_CACHE or
    ~/.cache/qtransfer)."""
    return cache_root(cache_dir) / "datasets"


def get_dataset(name: str, dest: Path, url: str | None = None, progress: bool = True) -> Path:
    """A registered dataset in dest/<folder>: written by its generator, or downloaded and checked; returns it."""
    source = DATASETS.lookup(name)
    if source.generate is None:
        return download_dataset(name, dest, url=url, progress=progress)
    if url is not None:
        raise InputError(f"the {name!r} dataset is written from a copy that ships with a package, not downloaded; "
                         "drop --url")
    return source.generate(Path(dest))


def download_dataset(
    name: str, dest: Path, url: str | None = None, sha256: str | None = None, progress: bool = True
) -> Path:
    """Fetch, check and unpack a registered dataset into `dest`; returns its root (dest/<folder>)."""
    source = DATASETS.lookup(name)
    if source.generate is not None:
        return get_dataset(name, dest, url, progress)
    dest = Path(dest)
    root = dest / source.folder
    if root.exists():
        _require_intact(root, source)
        return root
    # The registry's sha256 is that of the archive at its own URL; a mirror may re-pack the same
    # files, so without an explicit sha256 it is trusted only once every file matches the manifest.
    expected = sha256 or (source.sha256 if url is None else None)
    url = url or source.url
    if url is None:
        raise InputError(f"the {name!r} dataset has no download address registered: pass --url URL")
    archive = dest / f"{source.folder}.zip"
    if archive.is_file():
        hub.check_sha256(file_sha256(archive), expected, str(archive), "delete it to download it again")
    else:
        hub.download(url, archive, expected, f"the {name!r} dataset",
                     f"On a machine without internet, fetch that file elsewhere and put it at {archive}, or unzip it "
                     f"so that {root}/train/<class>/ exists; then run again.", progress)
    return _unpack(archive, dest, source)


def _unpack(archive: Path, dest: Path, source: DatasetSource) -> Path:
    """Extract `archive` beside it and check every file before the dataset folder appears."""
    try:
        with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as tmp:
            _refuse_escaping_members(zf, Path(tmp), archive)
            zf.extractall(tmp)
            unpacked = Path(tmp) / source.folder
            if not unpacked.is_dir():
                raise InputError(f"{archive} has no top-level {source.folder}/ folder; is it the right archive?")
            bad = _mismatches(unpacked, source)
            if bad:
                raise ChecksumError(
                    f"{len(bad)} file(s) in {archive} do not match the published checksums: "
                    f"{'; '.join(bad[:5])}. Delete {archive} and download it again."
                )
            os.replace(unpacked, dest / source.folder)
    except zipfile.BadZipFile as err:
        raise ChecksumError(f"{archive} is not a valid zip archive ({err}); delete it and download it again") from None
    return dest / source.folder


def _refuse_escaping_members(zf: zipfile.ZipFile, target: Path, archive: Path) -> None:
    base = target.resolve()
    for member in zf.namelist():
        if not (base / member).resolve().is_relative_to(base):
            raise InputError(f"refusing to unpack {archive}: member {member!r} would be written outside {target}")


def _require_intact(root: Path, source: DatasetSource) -> None:
    bad = _mismatches(root, source)
    if bad:
        raise ChecksumError(
            f"{root} exists but {len(bad)} file(s) differ from the published dataset: {'; '.join(bad[:5])}. "
            f"Delete {root} to download it again."
        )


def _mismatches(root: Path, source: DatasetSource) -> list[str]:
    """Files under `root` that are missing or differ from the source's manifest (none when it has no manifest)."""
    problems = []
    for relative, expected in _manifest(source).items():
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif (actual := file_sha256(path)) != expected:
            problems.append(f"{relative}: sha256 {actual}, expected {expected}")
    return problems


def _manifest(source: DatasetSource) -> dict[str, str]:
    """Relative path -> sha256, from a `sha256sum` listing shipped with the package."""
    if source.manifest is None:
        return {}
    text = (resources.files("qtransfer") / "checksums" / source.manifest).read_text(encoding="utf-8")
    entries = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {os.path.normpath(path.lstrip("*")): digest for digest, path in entries}

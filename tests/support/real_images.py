"""Small datasets made of the first real images of each class folder, for tests and the kill campaign."""
from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path


def real_subset(source: Path, root: Path, counts: Mapping[str, int | None], copy: bool = False) -> Path:
    """The first `counts[split]` .jpg images (all for None) of every class of each split of `source`, under `root`:
    symbolic links, or copies for tests that damage them."""
    for split, n in counts.items():
        for cls in sorted(p.name for p in (source / split).iterdir() if p.is_dir()):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for path in sorted((source / split / cls).glob("*.jpg"))[:n]:
                if copy:
                    shutil.copy(path, root / split / cls)
                else:
                    (root / split / cls / path.name).symlink_to(path)
    return root

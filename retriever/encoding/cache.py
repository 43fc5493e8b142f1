"""Where exported encoders live, and how a complete export is told from a partial or corrupt one.

An export is a folder (``model.onnx``, or ``model.xml`` + ``model.bin``, with ``tokenizer.json``)
and a ``manifest.json`` written last, naming every file with its size. A folder is built beside
its final place and renamed into it, so a killed export leaves no folder that looks complete.
Exports are found beside the model first (``MODEL/funnel-export/VARIANT``, written by
``funnel tune --export``), then in the cache (``$FUNNEL_CACHE``, else ``$XDG_CACHE_HOME/funnel``,
else ``~/.cache/funnel``) under ``encoders/FINGERPRINT/VARIANT``.

The model's fingerprint (a hash of its weights) needs the weights loaded; so that a fast encoder
starts without loading them, it is kept per model folder under ``sources/``, keyed by the folder's
files (path, size, modification time): any change to a file is a new key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
BESIDE_MODEL = "funnel-export"
FORMAT = 1


def cache_root() -> Path:
    """``$FUNNEL_CACHE``, else ``$XDG_CACHE_HOME/funnel``, else ``~/.cache/funnel``."""
    if root := os.environ.get("FUNNEL_CACHE"):
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "funnel"


@dataclass(frozen=True)
class ModelFacts:
    """What a fast encoder needs to know of its source model without loading its weights."""

    fingerprint: str
    dim: int
    max_tokens: int
    inputs: tuple[str, ...]  # the model's input names (input_ids, attention_mask[, token_type_ids])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFacts:
        return cls(str(data["fingerprint"]), int(data["dim"]), int(data["max_tokens"]), tuple(data["inputs"]))


def source_key(model_dir: Path) -> str | None:
    """A key that changes whenever a file of ``model_dir`` changes (``None`` if it is not a folder)."""
    if not model_dir.is_dir():
        return None
    digest = hashlib.sha256(str(model_dir.resolve()).encode())
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir)
        if rel.parts[0] == BESIDE_MODEL or not path.is_file():
            continue
        stat = path.stat()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def read_facts(model_dir: Path) -> ModelFacts | None:
    """The facts kept for ``model_dir`` as it is now, if any."""
    key = source_key(model_dir)
    if key is None:
        return None
    try:
        return ModelFacts.from_dict(json.loads((cache_root() / "sources" / f"{key}.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_facts(model_dir: Path, facts: ModelFacts) -> None:
    """Keep ``facts`` for ``model_dir`` (best effort: a read-only cache only costs a slower start)."""
    key = source_key(model_dir)
    if key is None:
        return
    target = cache_root() / "sources" / f"{key}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(asdict(facts)))
        os.replace(tmp, target)
    except OSError:
        pass


def read_manifest(folder: Path, fingerprint: str, variant: str) -> dict[str, Any] | None:
    """The manifest of a complete export of ``variant`` for ``fingerprint`` in ``folder``, else ``None``.

    Complete: the manifest parses, names this model and variant, and every file it lists is there
    with its recorded size.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or manifest.get("fingerprint") != fingerprint:
            return None
        if manifest.get("variant") != variant:
            return None
        files = manifest["files"]
        if not files or any((folder / name).stat().st_size != size for name, size in files.items()):
            return None
        return dict(manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def export_folders(model_dir: Path | None, fingerprint: str, variant: str) -> list[Path]:
    """Where an export of ``variant`` is looked for, in order: beside the model, then the cache."""
    slug = variant.replace("/", "-")
    places = [model_dir / BESIDE_MODEL / slug] if model_dir is not None else []
    return [*places, cache_root() / "encoders" / fingerprint / slug]


def finish_export(building: Path, target: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` into ``building`` (listing its files) and move it to ``target`` at once.

    An existing ``target`` (a partial or corrupt export) is moved aside and deleted first.
    """
    files = {p.name: p.stat().st_size for p in sorted(building.iterdir()) if p.is_file() and p.name != MANIFEST}
    (building / MANIFEST).write_text(json.dumps({**manifest, "format": FORMAT, "files": files}, indent=2))
    if target.exists():
        trash = target.with_name(f".trash-{target.name}-{uuid.uuid4().hex[:8]}")
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(building, target)
    return target


def building_folder(target: Path) -> Path:
    """A new empty folder beside ``target`` to build an export in (same file system: renamed later)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = target.with_name(f".building-{target.name}-{uuid.uuid4().hex[:8]}")
    folder.mkdir()
    return folder

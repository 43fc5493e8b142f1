"""Copy a sentence-transformers model directory with its weights cast to another float dtype.

The device machine used to tune and embed (see ``device_tune_embed.sh``) takes at most 64 MiB in and
16 MiB per file out, so models travel as float16 (MiniLM: 45 MB instead of 91 MB) and are cast back
to float32 before use. A float16 -> float32 cast is exact, so the float32 model rebuilt here has
the same weights (and fingerprint) as the one that embedded the vectors there.

    python benchmarks/model_dtype.py SRC_DIR DST_DIR --dtype float16
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def cast_model(src: Path, dst: Path, dtype: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    target = {"float16": torch.float16, "float32": torch.float32}[dtype]
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "checkpoint-*"), dirs_exist_ok=True)
    for weights in src.rglob("*.safetensors"):
        if any(part.startswith("checkpoint-") for part in weights.relative_to(src).parts):
            continue
        tensors = {k: (v.to(target) if v.is_floating_point() else v) for k, v in load_file(weights).items()}
        out = dst / weights.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, out, metadata={"format": "pt"})
    config = dst / "config.json"
    if config.exists():
        cfg = json.loads(config.read_text())
        for key in ("torch_dtype", "dtype"):
            if key in cfg:
                cfg[key] = dtype
        config.write_text(json.dumps(cfg, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--dtype", choices=["float16", "float32"], required=True)
    args = ap.parse_args()
    cast_model(args.src, args.dst, args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

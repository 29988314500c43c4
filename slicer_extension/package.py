"""Write the Super-resolution module folder as Slicer loads it from an extension install, engine included.

    python slicer_extension/package.py OUT_DIR                 # OUT_DIR/SuperResolution/... (the whole module)
    python slicer_extension/package.py --engine-only OUT_DIR   # OUT_DIR/rmisr_monai only (the CMake install rule)

The module folder (Slicer's ``lib/Slicer-X.Y/qt-scripted-modules`` of the extension) holds ``SuperResolution.py``,
``SuperResolutionLib/``, ``Scripts/``, ``Resources/`` and ``rmisr_monai/``: the engine's code and only the weights
of the registry's shipped defaults (``"default"`` and ``"status": "current"``), copied byte for byte from the
package source of this checkout at packaging time -- one engine, never a hand-edited copy. The packaged
``weights/registry.json`` lists just those entries (its models then all have their files). Slicer puts the module
folder on ``sys.path``, so ``import rmisr_monai`` finds the packaged engine; the worker script puts it first on its
own path. ``PACKAGED.json`` in the engine folder records what was copied (path and sha256 of every file).

Standard library only, Python >= 3.9 (Slicer's Python runs it at build time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
MODULE_NAME = "SuperResolution"
MODULE_SOURCE = HERE / MODULE_NAME
ENGINE_SOURCE = REPO_ROOT / "rmisr_monai"
# what the module folder holds besides the engine (relative to MODULE_SOURCE; folders copied whole)
MODULE_ITEMS = (f"{MODULE_NAME}.py", f"{MODULE_NAME}Lib", "Scripts", "Resources")
# engine data besides the *.py files (weights are chosen from the registry)
ENGINE_DATA = ("sample/README.md", "sample/ct_demo_abdomen_int16.nii.gz")
MANIFEST = "PACKAGED.json"
_SKIP = ("__pycache__", ".pytest_cache")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_shipped_default(entry: dict) -> bool:
    return bool(entry.get("default", True)) and entry.get("status", "current") == "current" and "file" in entry


def shipped_registry(source: Path = ENGINE_SOURCE) -> dict:
    """The package source's registry reduced to its shipped default entries (same format key)."""
    data = json.loads((source / "weights" / "registry.json").read_text(encoding="utf-8"))
    models = data.get("models", []) if isinstance(data, dict) else data
    kept = [entry for entry in models if _is_shipped_default(entry)]
    return {**data, "models": kept} if isinstance(data, dict) else {"models": kept}


def _copy(source: Path, target: Path, copied: list) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    copied.append(target)


def write_engine(destination: Path, source: Path = ENGINE_SOURCE) -> Path:
    """Copy the engine into ``destination/rmisr_monai`` (replacing one there); returns that folder."""
    engine = Path(destination) / "rmisr_monai"
    if engine.exists():
        shutil.rmtree(engine)
    copied: list = []
    for path in sorted(source.rglob("*.py")):
        if not any(part in _SKIP for part in path.relative_to(source).parts):
            _copy(path, engine / path.relative_to(source), copied)
    for relative in ENGINE_DATA:
        _copy(source / relative, engine / relative, copied)
    registry = shipped_registry(source)
    files = sorted({entry["file"] for entry in registry["models"]})
    for name in files:
        weights = source / "weights" / name
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: the registry's default model file is missing from the package source")
        _copy(weights, engine / "weights" / name, copied)
    (engine / "weights" / "registry.json").write_text(json.dumps(registry, indent=1) + "\n", encoding="utf-8")
    copied.append(engine / "weights" / "registry.json")
    manifest = {
        "source": "rmisr_monai of the rmisr-monai checkout, copied by slicer_extension/package.py",
        "weights": files,
        "files": {p.relative_to(engine).as_posix(): _sha256(p) for p in copied},
    }
    (engine / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return engine


def write_module(out_dir: Path) -> Path:
    """Write ``out_dir/SuperResolution`` (replacing one there): module files, then the engine; returns it."""
    module = Path(out_dir) / MODULE_NAME
    if module.exists():
        shutil.rmtree(module)
    module.mkdir(parents=True)
    for item in MODULE_ITEMS:
        source = MODULE_SOURCE / item
        if source.is_dir():
            shutil.copytree(source, module / item, ignore=shutil.ignore_patterns(*_SKIP))
        else:
            shutil.copyfile(source, module / item)
    write_engine(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write into")
    parser.add_argument("--engine-only", action="store_true", help="write only OUT_DIR/rmisr_monai")
    args = parser.parse_args(argv)
    if args.engine_only:
        print(write_engine(Path(args.out_dir)))
    else:
        print(write_module(Path(args.out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

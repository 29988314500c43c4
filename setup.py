"""Install rmisr-monai: medical-image super-resolution networks, transforms and a volume engine for MONAI.

The version lives in one place, ``rmisr_monai/__init__.py`` (``__version__``), read here as text so that building
needs neither torch nor the package's dependencies; the bundles' ``required_packages_version`` names the same one
(tests/bundles). The wheel ships exactly the weights files that ``rmisr_monai/weights/registry.json`` lists (the
models the CLI can choose), never an older file left in the folder (tests/packaging).
"""

import json
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    text = (HERE / "rmisr_monai" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("rmisr_monai/__init__.py: no __version__ line")
    return match.group(1)


def registry_weights() -> list[str]:
    """``weights/<file>`` of every registry entry that has a file and is not superseded (deduplicated, sorted), plus
    the registry itself."""
    registry = json.loads((HERE / "rmisr_monai" / "weights" / "registry.json").read_text(encoding="utf-8"))
    files = {
        f"weights/{entry['file']}"
        for entry in registry["models"]
        if entry.get("file") and entry.get("status", "current") != "superseded"
    }
    return ["weights/registry.json", *sorted(files)]


setup(
    name="rmisr-monai",
    version=read_version(),
    description="Medical-image super-resolution (RMISR, dense SR, baselines) as MONAI networks, transforms and a CLI",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["rmisr_monai", "rmisr_monai.*"]),
    package_data={"rmisr_monai": [*registry_weights(), "sample/*.nii.gz", "sample/*.md"]},
    include_package_data=False,
    install_requires=[
        # torch is pinned: an open range pulls a multi-GB CUDA build on machines without the CPU wheel
        "torch==2.13.0",
        "monai>=1.6.1,<1.7",
        "pytorch-ignite>=0.4.11,<0.6",  # MONAI SupervisedTrainer / bundles
        "SimpleITK>=2.3",
        "nibabel>=5.0",
        "pydicom>=3.0",
        "pylibjpeg>=2.0",
        "pylibjpeg-openjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.0",
        "pylibjpeg-rle>=2.0",
        "numpy>=1.24,<3",
        "scipy>=1.10",
        "tqdm>=4.60",
        "pillow>=10",
        "matplotlib>=3.7",  # rmisr evaluate / demo figures
    ],
    extras_require={
        # vtk: tests/slicer build the Slicer stand-in on real vtkImageData/vtkMatrix4x4; psutil: its process-tree kill
        # fire: the `python -m monai.bundle` command line; tensorboard: the bundles' training logs
        # onnx, onnxruntime: tests/networks/test_export.py runs every network's ONNX export in ONNX Runtime
        # ruff: tests/repository/test_style.py checks the lint rules of ruff.toml
        # jsonschema, requests: tests/slicer/test_extensions_index.py runs the ExtensionsIndex's own checks
        "test": [
            "pytest>=8", "parameterized>=0.9", "pynrrd>=1.0", "vtk>=9.3", "psutil>=5.9", "fire>=0.5",
            "tensorboard>=2.14", "onnx>=1.16", "onnxruntime>=1.18", "ruff>=0.6", "jsonschema>=4", "requests>=2",
        ],
        "bundle": ["fire>=0.5", "tensorboard>=2.14"],
    },
    entry_points={"console_scripts": ["rmisr=rmisr_monai.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
)

"""Install rmisr-monai: medical-image super-resolution networks, transforms and a volume engine for MONAI."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="rmisr-monai",
    version="0.1.0",
    description="Medical-image super-resolution (RMISR, dense SR, baselines) as MONAI networks, transforms and a CLI",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["rmisr_monai", "rmisr_monai.*"]),
    package_data={"rmisr_monai": ["weights/*.json", "weights/*.pt", "sample/*.nii.gz", "sample/*.md"]},
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
        "test": [
            "pytest>=8", "parameterized>=0.9", "pynrrd>=1.0", "vtk>=9.3", "psutil>=5.9", "fire>=0.5", "tensorboard>=2.14",
            "onnx>=1.16", "onnxruntime>=1.18",
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

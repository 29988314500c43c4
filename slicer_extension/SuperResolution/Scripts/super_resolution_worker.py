"""Entry point of the worker process: ``PythonSlicer super_resolution_worker.py --input ... --output ...``.

Runs :func:`SuperResolutionLib.worker.main` (see there for the arguments); usable with any Python that has
rmisr_monai installed, outside Slicer too.
"""

import sys
from pathlib import Path

# the module folder holds SuperResolutionLib
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from SuperResolutionLib.worker import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""The extension's catalog entry (slicer_extension/SuperResolution.json) and top-level CMakeLists.txt under the
Slicer ExtensionsIndex's own checks: ``scripts/check_description_files.py`` of ../shared/slicer/ExtensionsIndex,
loaded and called as its ``main`` calls them, on this checkout instead of a clone.

Offline, two things the script fetches come from local copies: the JSON schema (the index's ``schemas/`` folder)
and the icon / screenshot URLs, which must name PNG files of this repository (raw.githubusercontent.com/OWNER/REPO/
REVISION/PATH -> PATH). Not run here: the GitHub topics check (the GitHub API). The repository-name check fails by
the index's rule (the repository is not named Slicer*): asserted as such, so a rename shows up here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import types
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import shared_path
from tests.slicer.conftest import EXTENSION, REPO_ROOT

DESCRIPTION = EXTENSION / "SuperResolution.json"


@pytest.fixture(scope="module")
def index():
    folder = shared_path("slicer", "ExtensionsIndex")
    source = (folder / "scripts/check_description_files.py").read_text(encoding="utf-8")
    # the script is Python >= 3.12 in one line of print_categories (a backslash in an f-string), which no check uses
    line = next(x for x in source.splitlines() if x.strip().startswith("print(f\"[\\n{'\\n'.join("))
    if sys.version_info < (3, 12):
        source = source.replace(line, line[: len(line) - len(line.lstrip())] + "pass  # (3.12 syntax; unused here)")
    script = types.ModuleType("check_description_files")
    exec(compile(source, str(folder / "scripts/check_description_files.py"), "exec"), script.__dict__)
    return script, folder


class _Response:
    def __init__(self, payload=None, content_type="application/json"):
        self.payload, self.headers = payload, {"Content-Type": content_type}

    def raise_for_status(self):
        pass

    def json(self):
        return self.payload


def _offline_get(schemas: Path):
    def get(url, timeout=None, **kwargs):
        path = urllib.parse.urlsplit(url).path
        if path.endswith(".json"):
            return _Response(json.loads((schemas / Path(path).name).read_text()))
        parts = path.strip("/").split("/")  # OWNER/REPO/REVISION/PATH...
        local = REPO_ROOT.joinpath(*parts[3:])
        with Image.open(local) as image:  # a real image file of this repository
            kind = image.format.lower()
        return _Response(content_type=f"image/{kind}")

    return get


def test_description_passes_the_index_checks(index, monkeypatch):
    script, folder = index
    if script.requests is None or script.jsonschema is None:
        pytest.skip("the index script needs jsonschema and requests (pip install jsonschema requests)")
    monkeypatch.setattr(script.requests, "get", _offline_get(folder / "schemas"))
    name = DESCRIPTION.stem
    metadata = script.parse_json(str(DESCRIPTION))
    script.check_json_schema(name, metadata)
    script.check_json_file_format(name, metadata, str(DESCRIPTION))
    script.check_extension_name(name, metadata)
    script.check_category(name, metadata)
    script.check_scm_url_syntax(name, metadata)
    script.check_cmakelists_content(name, metadata, cloned_repository_folder=str(REPO_ROOT))
    script.check_license_file(name, metadata, str(REPO_ROOT))
    with pytest.raises(script.ExtensionCheckError, match="should\\* start with 'Slicer'"):
        script.check_git_repository_name(name, metadata)


def test_repository_tree_is_under_the_size_limit(index, tmp_path):
    script, _ = index
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    # the tracked tree of HEAD; a clone adds .git (the history), which this does not measure
    script.check_repository_size("SuperResolution", {}, cloned_repository_folder=str(tmp_path))

"""The GitHub workflows (publish the book, run the tests) are valid and safe, checked
offline: against GitHub's workflow schema with check-jsonschema, and with zizmor's
security audits (pinned actions, no persisted credentials, least permissions)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: it is in requirements.txt")
    return found


def test_there_is_a_publish_and_a_test_workflow():
    names = {w.stem for w in WORKFLOWS}
    assert {"pages", "test"} <= names
    pages = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text())
    steps = " ".join(str(s) for job in pages["jobs"].values() for s in job["steps"])
    assert "make book" in steps and "deploy-pages" in steps and "upload-pages-artifact" in steps
    assert "zh/index.html" in steps, "the Pages artifact is not checked for the Chinese edition"
    test = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    assert "bash .ci/run" in " ".join(str(s) for job in test["jobs"].values() for s in job["steps"])


def test_workflows_match_githubs_schema():
    out = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                          *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_workflows_pass_zizmor():
    out = subprocess.run([tool("zizmor"), "--offline", str(ROOT / ".github" / "workflows")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

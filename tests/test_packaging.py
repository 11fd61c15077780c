"""The package as users install it: a wheel that starts outside the checkout."""

from __future__ import annotations

import re
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port


def test_the_package_never_imports_itself_by_a_folder_name() -> None:
    # installed, the folder ``server/`` is the package ``chatlead``: absolute imports of
    # ``server`` would load a second copy (or fail)
    absolute = re.compile(r"^\s*(from|import) server\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "server").rglob("*.py")
        if absolute.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.slow
def test_the_wheel_serves_the_demo_widget_and_admin_from_anywhere(tmp_path: Path) -> None:
    # built from a copy: setuptools reuses a build/ folder it finds, old files included
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", ".chatlead", "node_modules"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("chatlead-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # the test environment's packages, by a path file: seconds, not a download
    purelib = next(venv.glob("lib/python*/site-packages"))
    deps = [p for p in site.getsitepackages() if "site-packages" in p]
    (purelib / "deps.pth").write_text("\n".join(deps) + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import chatlead; print(chatlead.__file__)"],
        cwd=elsewhere, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert str(purelib) in where  # the installed copy, not the checkout
    port = free_port()
    serve = subprocess.Popen(
        [str(venv / "bin" / "chatlead"), "serve", "--port", str(port)],
        cwd=elsewhere, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(base + "/demo").status_code == 200
        script = httpx.get(base + "/widget/chatlead.js")
        assert script.status_code == 200 and "chatlead" in script.text
        ui = re.search(r"chatlead-ui\.[A-Za-z0-9_-]+\.js", script.text)
        assert ui is not None
        assert httpx.get(f"{base}/widget/{ui.group(0)}").status_code == 200
        admin = httpx.get(base + "/admin", follow_redirects=False)
        assert admin.status_code in (200, 302, 303, 401)
        login = httpx.get(base + "/admin/login")
        assert login.status_code == 200 and "chatlead admin-url" in login.text
    finally:
        serve.terminate()
        serve.wait(15)

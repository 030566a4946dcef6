"""A new virtualenv beside the project (it sees the project's packages) with a plugin
distribution pip-installed into it, and how to run twistd from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


def venv_with(plugin_source: Path, venv: Path) -> Path:
    """Install the distribution in ``plugin_source`` into a new venv; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    # A site dir, not a plain path entry, so that the project's editable install works.
    (Path(site) / "n2gateway-project.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    # Built from a copy: the build leaves nothing in the source tree.
    build = venv.parent / f"{plugin_source.name}-build"
    shutil.copytree(plugin_source, build, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", str(build)],
                   check=True, capture_output=True)
    return python


def twistd_of(python: Path) -> list[str]:
    return [str(python), "-c", "import sys; from twisted.scripts.twistd import run;"
            " sys.argv[0] = 'twistd'; run()"]

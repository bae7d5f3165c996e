"""How this copy of clipbench was installed, so a hint to add an optional extra is a command that works.

``pip install 'clipbench[plot]'`` fetches clipbench from an index; a project installed from a clone
(``pip install -e .``) needs ``pip install -e '.[plot]'`` instead.  pip records which it was in the
distribution's ``direct_url.json`` (PEP 610).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse


def install_command(extra: str) -> str:
    """The pip command that adds the optional ``extra`` to the clipbench installed here."""
    from importlib.metadata import distributions

    # the first record pip wrote (a clone's own clipbench.egg-info, found first from its folder, has none)
    raw = next((text for dist in distributions(name="clipbench") if (text := dist.read_text("direct_url.json"))),
               None)
    try:
        info = json.loads(raw) if raw else {}
    except ValueError:
        info = {}
    url = info.get("url") if isinstance(info, dict) else None
    if not isinstance(url, str):
        return f"pip install 'clipbench[{extra}]'"
    if isinstance(info.get("vcs_info"), dict):  # pip install git+https://...
        return f"pip install 'clipbench[{extra}] @ {url}'"
    parsed = urlparse(url)
    if parsed.scheme == "file" and isinstance(info.get("dir_info"), dict):  # a clone: pip install [-e] PATH
        folder = Path(unquote(parsed.path))
        shown = "." if _same(folder, Path.cwd()) else str(folder)
        editable = "-e " if info["dir_info"].get("editable") else ""
        return f"pip install {editable}'{shown}[{extra}]'"
    return f"pip install 'clipbench[{extra}]'"  # a wheel or an archive: the extra's requirements from the index


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False

"""The user's modules (`--import MODULE`) in keras-graft's child processes.

A model file may need the user's code: a registered layer or loss, the
function a Keras 2 `Lambda` names. The user imports it in the main process
(`--import`, or a plain `import`); a child process that loads the same file
must import it too, from where the main process found it. `request(names)`
says what to import and from which folders; the child puts the folders
first on `sys.path` and imports the modules before it loads anything.

>>> request(["json"])["modules"]
['json']
"""

from __future__ import annotations

import sys
from pathlib import Path


def _root(name: str) -> str | None:
    """The folder from which `name` (imported here) was imported."""
    location = getattr(sys.modules.get(name), "__file__", None)
    if not location:
        return None
    folder = Path(location).resolve().parent
    depth = name.count(".") + (Path(location).name == "__init__.py")
    for _ in range(depth):
        folder = folder.parent
    return str(folder)


def request(names) -> dict:
    """`{"modules": names, "paths": folders}` for a child to import `names` as this process did."""
    names = list(names)
    paths = []
    for name in names:
        root = _root(name)
        if root is not None and root not in paths:
            paths.append(root)
    return {"modules": names, "paths": paths}

"""Run a script as a Hub user would: a fresh process outside the checkout, with neither the `visionclip` package nor
the remote-code modules importable, so that everything must come through `trust_remote_code`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from visionclip.hub import HUB_CODE_FILES

_HIDE_CHECKOUT = textwrap.dedent(
    """
    import importlib.abc, json, os

    class NotInstalled(importlib.abc.MetaPathFinder):
        hidden = {"visionclip", *json.loads(os.environ["VISIONCLIP_HIDDEN_MODULES"])}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.hidden:
                raise ModuleNotFoundError(f"No module named {name!r} (a Hub user's process)")
            return None

    import sys
    sys.meta_path.insert(0, NotInstalled())
    """
)


def run_as_hub_user(script: str, args: list[str], workdir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Write `script` into `workdir` and run it there with `args`, offline and with a private HF_HOME."""
    (workdir / "child.py").write_text(_HIDE_CHECKOUT + textwrap.dedent(script))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(workdir / "hf_home"),
        VISIONCLIP_HIDDEN_MODULES=json.dumps([Path(name).stem for name in HUB_CODE_FILES]),
    )
    return subprocess.run(
        [sys.executable, "child.py", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )

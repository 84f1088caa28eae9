"""Output files: written whole or not at all, and streams and links kept what they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from proxygym.agents.files import write_text_atomic
from tests.helpers import hand_scenario


def test_a_link_to_a_file_stays_a_link(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_a_redirected_stdout_is_appended_to_not_replaced(tmp_path):
    """``--json`` given a link to /proc/self/fd/1 (what /dev/stdout is) while stdout is redirected to a file:
    the JSON follows what was printed, in that file, and the link is still a link."""
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(hand_scenario(expect=[{"better": "T", "than": "R", "metric": "base_rate"}])))
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        res = subprocess.run([sys.executable, "-m", "proxygym", "claims", str(path), "--json", str(link)], stdout=f,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    text = out.read_text()
    assert text.startswith("hand: hand-worked") and "All 1 claims hold." in text
    (row,) = json.loads(text[text.index("\n[") :].split("\nwrote")[0])
    assert row["holds"] is True

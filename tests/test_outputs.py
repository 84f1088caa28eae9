"""What the commands write and show: an output that cannot be written is one line before any work, for every
command that writes a file or a folder; standard output that cannot be written is one line too; a progress
bar on a terminal by default, none with --no-progress and none when standard error is not a terminal."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import struct
import subprocess
import sys
import termios
import threading

import pytest
import yaml

from proxygym.cli import main
from tests.helpers import ROOT, error_line, hand_scenario, run_cli_here

#: A folder no one may make files in, whoever runs the tests (sysfs refuses new files, even to root).
SYS = "/sys/proxygym_cannot_be_made"


@pytest.fixture()
def blocker(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def commands(tmp_path, blocker) -> list[tuple[list[str], str]]:
    """Each file-writing command with one output it cannot write, and what the error must name."""
    hand = tmp_path / "hand.yaml"
    hand.write_text(yaml.safe_dump(hand_scenario(expect=[{"better": "T", "than": "R", "metric": "base_rate"}])))
    return [
        (["bench", "--scenario", "sticky_values", "--strategy", "random", "--episodes", "20", "--json", f"{blocker}/b.json"],
         f"{blocker} is a file, not a folder"),
        (["bench", "--scenario", "sticky_values", "--episodes", "20", "--plot", f"{SYS}/b.png"], SYS),
        (["claims", str(hand), "--json", f"{blocker}/c.json"], f"{blocker} is a file"),
        (["analyze", "sticky_values", "--plan", "R", "--plot", f"{SYS}/a.svg"], SYS),
        (["sweep", "sticky_values", "--vary", "budget=1:3:3", "--plans", "R", "--csv", f"{blocker}/s.csv"], f"{blocker} is a file"),
        (["flips", "sticky_values", "--plan", "T,R,R", "--than", "R", "--json", str(tmp_path)], "it is a folder"),
        (["advise", "sticky_values", "--json", f"{blocker}/deeper/a.json"], f"{blocker} is a file"),
        # checked before the model is even looked for
        (["inspect", str(tmp_path / "no_model.zip"), "--scenario", "sticky_values", "--tensorboard-log", f"{blocker}/tb"],
         f"--tensorboard-log {blocker}/tb"),
    ]


def test_every_unwritable_output_is_one_line_before_any_work(tmp_path, blocker):
    for args, words in commands(tmp_path, blocker):
        res = run_cli_here(*args)
        line = error_line(res.returncode, res.stdout, res.stderr, args)  # nothing printed: no work was done
        assert "cannot write" in line and words in line, (args, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "hand.yaml"] and blocker.read_text() == "not a folder"


def test_train_refuses_folders_it_cannot_write_before_training(tmp_path, blocker, capsys):
    import train

    for args, words in ((["--log-folder", f"{blocker}/logs"], f"--log-folder {blocker}/logs"),
                        (["--log-folder", str(tmp_path / "logs"), "--tensorboard-log", f"{SYS}/tb"], "--tensorboard-log")):
        assert train.main(["-n", "64", *args]) == 2
        out = capsys.readouterr()
        assert words in error_line(2, out.out, out.err, args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no run folder was made


def test_standard_output_that_cannot_be_written_is_one_line():
    """A full disk (/dev/full) behind standard output: the process's own stdout, so a subprocess."""
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "proxygym", "scenarios"], stdout=full, stderr=subprocess.PIPE,
                             text=True, cwd=ROOT, timeout=120)
    assert "cannot write standard output: No space left on device" in error_line(res.returncode, "", res.stderr)


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """``proxygym ARGS`` in this process with standard error on a real pseudo-terminal (120 columns): the exit
    code, standard output, and what the terminal received."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    received = []

    def read() -> None:  # drained as it comes, so the terminal never fills
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal was closed
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    out = io.StringIO()
    with open(slave, "w", buffering=1) as tty, contextlib.redirect_stdout(out), contextlib.redirect_stderr(tty):
        assert sys.stderr.isatty()
        code = main(list(args))
    reader.join(timeout=10)
    os.close(master)
    return code, out.getvalue(), b"".join(received).decode(errors="replace")


@pytest.fixture(scope="module")
def hand_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hand") / "hand.yaml"
    path.write_text(yaml.safe_dump(hand_scenario(expect=[{"better": "T", "than": "R", "metric": "base_rate"}])))
    return str(path)


@pytest.mark.parametrize("command, unit", [
    (["bench", "--scenario", "sticky_values", "--strategy", "random", "always_train", "--episodes", "20"], "pair"),
    (["claims", "HAND", "--episodes", "20"], "scenario"),
    (["sweep", "HAND", "--vary", "budget=1:4:4", "--plans", "T", "R"], "chunk"),
])
def test_a_progress_bar_on_a_terminal_only(command, unit, hand_file):
    """Bench, claims and sweep (flips and advise read the same rule, proxygym.cli._progress)."""
    args = [hand_file if a == "HAND" else a for a in command]
    code, out, shown = on_a_terminal(*args)
    assert code == 0 and out, shown
    assert "100%" in shown and f"{unit}/s" in shown  # tqdm's bar, in its own unit
    code, quiet_out, quiet = on_a_terminal(*args, "--no-progress")
    assert quiet == "" and quiet_out == out  # the same results, no bar
    res = run_cli_here(*args)  # standard error captured: not a terminal
    assert res.stderr == "" and res.stdout == out

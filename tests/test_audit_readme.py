"""The README's audit session is what the commands print (issue 12, item 6): every `$`
command of its two console blocks runs as a real process, in order, in one folder, and
its output (stdout and stderr) must equal the README's once the values that differ on
every run are masked (keys, roots, decision and registry ids, dates, timings)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "A whole session, exactly as the commands print it"
KEYS = "### Keys that cannot be confused"

_RANDOM = [
    (re.compile(r"\+[0-9a-f]{8}\+[A-Za-z0-9+/]{43,}={0,2}"), "+KEYID+KEY"),
    (re.compile(r"\+[0-9a-f]{8}\b"), "+KEYID"),
    (re.compile(r"\b[A-Za-z0-9+/]{43}="), "ROOT"),
    (re.compile(r"\b[0-9a-f]{12}-\d+\b"), "DECISION"),
    (re.compile(r"\bregistry [0-9a-f]{32}\b"), "registry ID"),
    (re.compile(r"\d{1,2} [A-Z][a-z]+ \d{4} at \d\d:\d\d UTC"), "DATE"),
    (re.compile(r"\d+\.\d\ds, [\d,]+ entries/s"), "TIMING"),
]


def _mask(text: str) -> str:
    for pattern, replacement in _RANDOM:
        text = pattern.sub(replacement, text)
    return text


def _console_block(readme: str, after: str) -> list[str]:
    start = readme.index("```console\n", readme.index(after)) + len("```console\n")
    return readme[start:readme.index("```\n", start)].splitlines()


def _session(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) in order, continuation lines joined."""
    steps: list[tuple[str, list[str]]] = []
    command: str | None = None
    for line in lines:
        if command is not None and command.endswith("\\"):
            command = command[:-1] + line.strip()
            steps[-1] = (command, [])
        elif line.startswith("$ "):
            command = line[2:]
            steps.append((command, []))
        else:
            steps[-1][1].append(line)
    return steps


def test_the_readme_audit_session_is_what_the_commands_print(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    steps = _session(_console_block(readme, START)) + _session(_console_block(readme, KEYS))
    assert len(steps) > 10
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    for variable in ("FLOWGUARD_AUDIT", "FLOWGUARD_REGISTRY", "FLOWGUARD_LOG_KEY",
                     "FLOWGUARD_PSEUDONYM_KEY", "FLOWGUARD_ACTOR", "FLOWGUARD_POLICY"):
        env.pop(variable, None)
    for command, expected in steps:
        words = shlex.split(command)
        target = None
        if ">" in words:
            words, target = words[:words.index(">")], words[words.index(">") + 1]
        assert words[0] == "flowguard", command
        done = subprocess.run([sys.executable, "-m", "flowguard", *words[1:]], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        if target is not None:
            (tmp_path / target).write_text(done.stdout, encoding="utf-8")
            printed = done.stderr
        else:
            printed = done.stdout + done.stderr
        assert "Traceback" not in printed, (command, printed)
        assert _mask(printed).splitlines() == [_mask(line) for line in expected], command


def test_the_readme_examples_work_as_written_for_a_newcomer() -> None:
    """Review of issue 18: the examples run on a plain machine and do what the text says.
    `uuidgen` is not installed everywhere; `subject link` without `--audit` leaves the
    `login.linked` event unaudited until the next writer; `audit witness` without
    `--log-key` cannot sign a checkpoint of the whole log, so every call shown to succeed
    passes it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "uuidgen" not in readme
    commands = [command for block in re.findall(r"```console\n(.*?)```", readme, re.S)
                for command, _ in _session(block.splitlines())]
    links = [c for c in commands if c.startswith("flowguard subject link ")]
    assert links and all("--audit " in c and "--log-key " in c for c in links), links
    steps = [step for block in re.findall(r"```console\n(.*?)```", readme, re.S)
             for step in _session(block.splitlines())]
    witnessed = [(c, o) for c, o in steps if c.startswith("flowguard audit witness ")
                 and any(" 2 of 2 witnesses cosigned" in line for line in o)]
    assert witnessed
    for command, output in witnessed:
        stale = any("not covered by the latest checkpoint" in line for line in output)
        assert ("--log-key " in command) != stale, (command, output)

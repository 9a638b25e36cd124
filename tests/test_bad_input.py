"""Bad input never produces a traceback or a permit.

Malformed YAML, wrong types, unknown keys, naive timestamps, unknown ids, empty files, a 50 MB
file, deeply nested YAML, YAML aliases ("billion laughs"), duplicate keys and ids, non-UTF-8
bytes, missing paths: each gets a clear error naming the file (and, where meaningful, line and
column) and nothing else happens. Every case is checked twice:

- in the library: `load_policy` raises `PolicyError`, `load_registry` raises `RegistryError`
  (both `InputError`s carrying `Diagnostic`s);
- in the real command, run as a subprocess (`python -m flowguard check ...`): exit code 2, no
  traceback, nothing on stdout, the file (and position) named on stderr.

The subprocess runs of the table-driven cases are started together, once per module, so the
file stays fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

import flowguard
from flowguard import Diagnostic, Engine, Flow, InputError, PolicyError, RegistryError

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- fixtures' text

POLICY = """\
version: 1
service: {id: svc, controller: aalborg-kommune}
jurisdictions: {DK: {majority_age: 18}}
default_jurisdiction: DK
organizations:
  aalborg-kommune: {kind: municipality, sector: public}
  cafe: {kind: employer, sector: private}
actors:
  job-consultant: {organization: aalborg-kommune, role: job-consultant}
  cafe-manager: {organization: cafe, role: manager}
data_categories:
  identity.name: {}
  health: {special: true}
purposes:
  job-matching: {}
subprocesses:
  co-delivery: {co_produced: true, order: 1}
rules:
  - id: to-employer
    effect: permit
    sender: {organization: aalborg-kommune}
    recipient: {kind: employer}
    data: [identity.name]
    purposes: [job-matching]
    basis: consent
  - id: no-health
    effect: forbid
    recipient: {sector: private}
    data: [health]
"""

SECRET = "SECRET"
CITIZEN = "citizen-SECRET-123"

REGISTRY = f"""\
subjects:
  {CITIZEN}: {{birth_date: 1991-05-02, jurisdiction: DK}}
consents:
  - id: k-1
    subject: {CITIZEN}
    given_by: {CITIZEN}
    given_at: 2026-01-10T09:00:00Z
    recipients: [{{organization: cafe}}]
    data: [identity.name]
    purposes: [job-matching]
"""

FLOW = {"sender": "job-consultant", "recipient": "cafe-manager", "subject": CITIZEN,
        "data": ["identity.name"], "purpose": "job-matching", "subprocess": "co-delivery",
        "at": "2026-03-01T10:00:00Z"}
FLOW_OPTIONS = ["--sender", "job-consultant", "--recipient", "cafe-manager",
                "--subject", "citizen-0001", "--data", "identity.name",
                "--purpose", "job-matching", "--subprocess", "co-delivery",
                "--at", "2026-03-01T10:00:00Z"]

BIG_BYTES = 50 * 1024 * 1024
DEEP = 100_000


def edit(text: str, old: str, new: str) -> str:
    """`text` with `old` (which must occur) replaced by `new`."""
    assert old in text, old
    return text.replace(old, new)


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first occurrence of `needle` in `text`."""
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def billion_laughs() -> str:
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, 10):
        refs = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def deep_block_mapping(depth: int) -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"


# --------------------------------------------------------------------------- running the CLI

def run_cli(*args: str | Path, stdin: str | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m flowguard ARGS` in a new interpreter: the real thing, but ~1 s a run."""
    return subprocess.run([sys.executable, "-m", "flowguard", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          check=False)


# Most cases run through a "zygote": one interpreter that imports flowguard once and then
# forks a child per run; the child executes `python -m flowguard` (`runpy`, as `-m` does)
# with its own stdin, stdout and stderr, so each run is a separate process (a crash of the
# interpreter shows as a signal exit code) that costs milliseconds instead of a second.
Run = Callable[..., subprocess.CompletedProcess[str]]

ZYGOTE = r"""
import json, os, runpy, signal, sys
import flowguard._cli  # the expensive imports, done once

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.chdir(request["cwd"])
            for fd, name, flags in ((0, "in", os.O_RDONLY),
                                    (1, "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                    (2, "err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                os.dup2(os.open(request[name], flags, 0o600), fd)
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
            signal.alarm(int(request["timeout"]))
            sys.argv = ["flowguard", *request["args"]]
            try:
                runpy.run_module("flowguard", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Zygote:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, *args: str | Path, stdin: str | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.count += 1
        base = self.workdir / f"run-{self.count}"
        files = {name: base.with_suffix(f".{name}") for name in ("in", "out", "err")}
        files["in"].write_text(stdin or "", encoding="utf-8")
        request = {"args": [str(a) for a in args], "cwd": str(cwd or self.workdir),
                   "timeout": timeout, **{k: str(v) for k, v in files.items()}}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        code = json.loads(self.process.stdout.readline())["code"]
        return subprocess.CompletedProcess(
            ["flowguard", *request["args"]], code,
            files["out"].read_text(encoding="utf-8", errors="replace"),
            files["err"].read_text(encoding="utf-8", errors="replace"))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def fg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Run the flowguard command as a (forked) subprocess; see ZYGOTE."""
    zygote = Zygote(tmp_path_factory.mktemp("runs"))
    yield zygote.run
    zygote.close()


def assert_clean_input_error(result: subprocess.CompletedProcess[str], *names: str,
                             place: tuple[int, int] | None = None,
                             line: int | None = None) -> None:
    """Exit 2, no traceback, nothing on stdout, stderr names each of `names` (and a position)."""
    both = result.stdout + result.stderr
    assert "Traceback" not in both, both
    assert "internal error" not in both, both
    assert result.returncode == 2, (result.returncode, both)
    assert result.stdout.strip() == "", result.stdout
    assert result.stderr.strip(), "no message at all"
    for name in names:
        assert name in result.stderr, (name, result.stderr)
    if place is not None:
        assert f":{place[0]}:{place[1]}:" in result.stderr, (place, result.stderr)
    if line is not None:
        assert f":{line}:" in result.stderr, (line, result.stderr)


def assert_diagnostics(error: InputError, file: Path | str) -> list[Diagnostic]:
    assert isinstance(error, InputError)
    assert error.diagnostics, "an input error without diagnostics"
    for d in error.diagnostics:
        assert isinstance(d, Diagnostic)
        assert d.message
        assert d.severity in ("error", "warning")
        assert d.code
    errors = [d for d in error.diagnostics if d.severity == "error"]
    assert errors, error.diagnostics
    assert any(d.file is not None and Path(d.file).name == Path(file).name for d in errors), (
        file, error.diagnostics)
    return errors


# --------------------------------------------------------------------------- the cases

@dataclass
class Case:
    """One bad input file; `needle` locates the offending text (line and column expected)."""

    id: str
    kind: str  # "policy" or "registry"
    content: str | bytes | Callable[[], str | bytes]
    needle: str | None = None  # exact line:column of this text must be reported
    line_of: str | None = None  # the line of this text must be reported (column: any)
    message: tuple[str, ...] = ()  # substrings of some diagnostic's message
    hint: str | None = None  # substring of some diagnostic's hint
    code: str | None = None
    count: int | None = None  # exact number of diagnostics
    name: str = field(default="")

    def text(self) -> str | bytes:
        return self.content() if callable(self.content) else self.content

    @property
    def filename(self) -> str:
        return self.name or f"{self.id}.yaml"


POLICY_CASES = [
    # malformed YAML
    Case("unclosed-bracket", "policy", POLICY + "extra: [1, 2\n", message=("malformed YAML",),
         code="yaml"),
    Case("unclosed-brace", "policy", edit(POLICY, "{co_produced: true, order: 1}",
                                          "{co_produced: true, order: 1"),
         message=("malformed YAML",), code="yaml"),
    Case("bad-indentation", "policy", edit(POLICY, "  - id: to-employer\n    effect: permit",
                                           "  - id: to-employer\n      effect: permit"),
         message=("malformed YAML",), code="yaml", line_of="      effect: permit"),
    Case("tab-indentation", "policy", edit(POLICY, "service: {id: svc, controller: "
                                           "aalborg-kommune}", "service:\n\tid: svc"),
         message=("malformed YAML",), code="yaml", line_of="\tid: svc"),
    # wrong types
    Case("majority-age-string", "policy", edit(POLICY, "majority_age: 18",
                                               'majority_age: "eighteen"'),
         needle='"eighteen"', message=("majority_age",), code="type"),
    Case("rules-mapping", "policy", edit(POLICY, POLICY[POLICY.index("rules:"):], "rules: {}\n"),
         line_of="rules: {}", message=("rules", "list")),
    Case("data-number", "policy", edit(POLICY, "data: [identity.name]", "data: 5"),
         needle="5\n", message=("data",)),
    Case("special-string", "policy", edit(POLICY, "special: true", 'special: "yes"'),
         needle='"yes"', message=("special",)),
    Case("policy-is-a-list", "policy", "- version: 1\n- rules: []\n", message=("mapping",)),
    Case("version-2", "policy", edit(POLICY, "version: 1", "version: 2"), needle="2\n",
         message=("version",)),
    Case("unsafe-python-tag", "policy",
         edit(POLICY, "service: {id: svc, controller: aalborg-kommune}",
              'service: !!python/object/apply:os.system ["echo pwned"]')),
    # unknown keys
    Case("unknown-top-level-key", "policy", POLICY + "rulez: []\n", line_of="rulez",
         message=("rulez",), hint="`rules`", code="unknown-key"),
    Case("unknown-rule-key", "policy", edit(POLICY, "    effect: permit", "    efect: permit"),
         line_of="efect", message=("efect",), hint="did you mean `effect`", code="unknown-key"),
    Case("unknown-actor-key", "policy", edit(POLICY, "role: manager}", "rol: manager}"),
         line_of="rol: manager", message=("rol",), hint="`role`", code="unknown-key"),
    # misspelt references
    Case("misspelt-organization", "policy",
         edit(POLICY, "job-consultant: {organization: aalborg-kommune",
              "job-consultant: {organization: aalborg-komune"),
         needle="aalborg-komune", message=("aalborg-komune",), hint="`aalborg-kommune`",
         code="unknown-reference"),
    Case("misspelt-category-in-rule", "policy",
         edit(POLICY, "data: [identity.name]", "data: [identity.nam]"), needle="identity.nam]",
         hint="`identity.name`", code="unknown-reference"),
    Case("misspelt-purpose-in-rule", "policy",
         edit(POLICY, "purposes: [job-matching]", "purposes: [job-maching]"),
         needle="job-maching", hint="`job-matching`", code="unknown-reference"),
    # empty
    Case("empty-file", "policy", "", message=("empty",)),
    Case("only-comments", "policy", "# a policy\n# still to be written\n", message=("empty",)),
    Case("only-whitespace", "policy", "\n   \n\n", message=("empty",)),
    # aliases
    Case("billion-laughs", "policy", billion_laughs, line_of="lol1:", message=("alias",),
         code="yaml-alias"),
    Case("merge-key-alias", "policy",
         edit(POLICY, "organizations:\n  aalborg-kommune: {kind: municipality, sector: public}",
              "organizations:\n  aalborg-kommune: &org {kind: municipality, sector: public}\n"
              "  other: *org"), line_of="*org", code="yaml-alias"),
    # deep nesting
    Case("deep-flow-sequences", "policy", lambda: "rules: " + "[" * DEEP + "\n",
         code="too-deep"),
    Case("deep-flow-sequences-closed", "policy",
         lambda: "rules: " + "[" * DEEP + "]" * DEEP + "\n",
         code="too-deep"),
    Case("deep-flow-mappings", "policy", lambda: "rules: " + "{a: " * DEEP + "\n",
         code="too-deep"),
    Case("deep-block-mappings", "policy", lambda: deep_block_mapping(5000),
         code="too-deep"),
    Case("deep-block-sequences", "policy", lambda: "- " * DEEP + "x\n",
         code="too-deep"),
    Case("deep-json", "policy", lambda: "[" * DEEP + "]" * DEEP, name="deep-json.json",
         code="too-deep"),
    # duplicate keys, encodings
    Case("duplicate-key", "policy", edit(POLICY, "version: 1\n", "version: 1\nversion: 1\n"),
         needle="version: 1\nservice", message=("duplicate",), code="duplicate"),
    Case("duplicate-entity-id", "policy",
         edit(POLICY, "  cafe: {kind: employer, sector: private}\n",
              "  cafe: {kind: employer, sector: private}\n  cafe: {kind: ngo, sector: public}\n"),
         message=("duplicate",)),
    Case("duplicate-rule-id", "policy",
         edit(POLICY, "  - id: no-health", "  - id: to-employer"),
         line_of="  - id: to-employer\n    effect: forbid", message=("to-employer", "twice")),
    Case("duplicate-key-json", "policy", '{"version": 1, "version": 1, "rules": []}',
         name="duplicate-key-json.json", message=("duplicate",)),
    Case("not-utf8", "policy",
         lambda: POLICY.encode().replace(b"id: svc", b"id: sv\xff\xfe"), code="encoding"),
    Case("utf16", "policy", lambda: POLICY.encode("utf-16"), code="encoding"),
    Case("binary-nul", "policy", lambda: b"version: 1\n\x00\x01\x02rules: []\n"),
]

REGISTRY_CASES = [
    Case("reg-malformed", "registry", REGISTRY + "consents: [\n", message=("malformed",)),
    Case("reg-naive-given-at", "registry", edit(REGISTRY, "09:00:00Z", "09:00:00"),
         needle="2026-01-10T09:00:00", message=("given_at", "zone")),
    Case("reg-unknown-category", "registry",
         edit(REGISTRY, "data: [identity.name]", "data: [identity.nam]"),
         needle="identity.nam]", hint="`identity.name`", code="unknown-reference"),
    Case("reg-unknown-purpose", "registry",
         edit(REGISTRY, "purposes: [job-matching]", "purposes: [job-maching]"),
         needle="job-maching", hint="`job-matching`", code="unknown-reference"),
    Case("reg-unknown-recipient-org", "registry",
         edit(REGISTRY, "{organization: cafe}", "{organization: caffe}"), needle="caffe",
         hint="`cafe`", code="unknown-reference"),
    Case("reg-unknown-subject", "registry",
         edit(REGISTRY, f"    subject: {CITIZEN}", "    subject: citizen-SECRET-999"),
         needle="citizen-SECRET-999", code="unknown-reference"),
    Case("reg-expires-before-given", "registry",
         REGISTRY + "    expires_at: 2025-01-01T00:00:00Z\n", needle="2025-01-01T00:00:00Z",
         message=("expires_at",)),
    Case("reg-unknown-key", "registry", edit(REGISTRY, "    given_by:", "    givn_by:"),
         line_of="givn_by", hint="`given_by`", code="unknown-key"),
    Case("reg-consents-mapping", "registry", edit(REGISTRY, REGISTRY[REGISTRY.index("consents"):],
                                                  "consents: {}\n"), message=("list",)),
    Case("reg-explicit-string", "registry", REGISTRY + '    explicit: "yes"\n', needle='"yes"',
         message=("explicit",)),
    Case("reg-empty", "registry", "", message=("empty",)),
    Case("reg-only-comments", "registry", "# no consents yet\n", message=("empty",)),
    Case("reg-billion-laughs", "registry", billion_laughs, code="yaml-alias"),
    Case("reg-deep-json", "registry", lambda: '{"subjects": ' + "[" * DEEP + "]" * DEEP + "}",
         name="reg-deep-json.json", code="too-deep"),
    Case("reg-not-utf8", "registry", lambda: REGISTRY.encode().replace(b"k-1", b"k-\xff"),
         code="encoding"),
]

CASES = {case.id: case for case in POLICY_CASES + REGISTRY_CASES}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def good_policy(workdir: Path) -> Path:
    path = workdir / "good-policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    flowguard.load_policy(path)  # the baseline is valid: each case breaks exactly one thing
    return path


@pytest.fixture(scope="module")
def case_files(workdir: Path) -> dict[str, Path]:
    files = {}
    for case in CASES.values():
        folder = workdir / case.id
        folder.mkdir()
        path = folder / case.filename
        data = case.text()
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
        files[case.id] = path
    return files


@pytest.fixture(scope="module")
def cli_results(case_files: dict[str, Path], good_policy: Path, fg: Run
                ) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case through `flowguard check` (a bad policy, or a good one with a bad registry)."""
    results = {}
    for case_id, case in CASES.items():
        path = case_files[case_id]
        if case.kind == "policy":
            results[case_id] = fg("check", "-p", path, *FLOW_OPTIONS, cwd=path.parent)
        else:
            results[case_id] = fg("check", "-p", good_policy, "-r", path, *FLOW_OPTIONS,
                                  cwd=path.parent)
    return results


def test_baseline_registry_is_valid(good_policy: Path, tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    registry = flowguard.load_registry(path, flowguard.load_policy(good_policy))
    assert CITIZEN in registry.subjects


def _load(case: Case, path: Path, good_policy: Path) -> InputError:
    if case.kind == "policy":
        with pytest.raises(PolicyError) as info:
            flowguard.load_policy(path)
    else:
        policy = flowguard.load_policy(good_policy)
        with pytest.raises(RegistryError) as info:
            flowguard.load_registry(path, policy)
    return info.value


@pytest.mark.parametrize("case_id", list(CASES))
def test_library_raises_input_error(case_id: str, case_files: dict[str, Path],
                                    good_policy: Path) -> None:
    case = CASES[case_id]
    path = case_files[case_id]
    error = _load(case, path, good_policy)
    errors = assert_diagnostics(error, path)
    text = "\n".join(d.render() for d in error.diagnostics)
    content = case.text()
    if case.needle is not None:
        assert isinstance(content, str)
        line, column = position(content, case.needle)
        assert any((d.line, d.column) == (line, column) for d in errors), (line, column, text)
    if case.line_of is not None:
        assert isinstance(content, str)
        line, _ = position(content, case.line_of)
        assert any(d.line == line and d.column is not None for d in errors), (line, text)
    for part in case.message:
        assert any(part.lower() in d.message.lower() for d in errors), (part, text)
    if case.hint is not None:
        assert any(d.hint and case.hint in d.hint for d in errors), (case.hint, text)
    if case.code is not None:
        assert any(d.code == case.code for d in errors), (case.code, text)
    if case.count is not None:
        assert len(errors) == case.count, text


@pytest.mark.parametrize("case_id", list(CASES))
def test_cli_exits_2_naming_the_file(case_id: str, case_files: dict[str, Path],
                                     cli_results: dict[str, subprocess.CompletedProcess[str]]
                                     ) -> None:
    case = CASES[case_id]
    content = case.text()
    place = None
    line = None
    if isinstance(content, str):
        if case.needle is not None:
            place = position(content, case.needle)
        elif case.line_of is not None:
            line = position(content, case.line_of)[0]
    assert_clean_input_error(cli_results[case_id], case_files[case_id].name, place=place,
                             line=line)


@pytest.mark.parametrize("case_id", ["deep-flow-sequences", "deep-block-mappings",
                                     "billion-laughs", "tab-indentation", "reg-naive-given-at"])
def test_fresh_interpreter(case_id: str, case_files: dict[str, Path], good_policy: Path
                           ) -> None:
    """A few cases through a brand-new `python -m flowguard`, not a forked child: deep nesting
    must not crash (segfault, RecursionError) even with a fresh interpreter's stack."""
    case = CASES[case_id]
    path = case_files[case_id]
    if case.kind == "policy":
        result = run_cli("check", "-p", path, *FLOW_OPTIONS)
    else:
        result = run_cli("check", "-p", good_policy, "-r", path, *FLOW_OPTIONS)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert_clean_input_error(result, path.name)


def test_unsafe_tag_runs_nothing(case_files: dict[str, Path],
                                 cli_results: dict[str, subprocess.CompletedProcess[str]]
                                 ) -> None:
    assert "pwned" not in cli_results["unsafe-python-tag"].stdout


# --------------------------------------------------------------------------- special cases

def test_unclosed_bracket_points_at_the_opening_bracket(tmp_path: Path) -> None:
    """libyaml only notices an unclosed `[` at the end of the file; the diagnostic must still
    say where the bracket was opened (PyYAML's own message does: "while parsing a flow
    sequence in ..., line 5, column 10"), or a user of a long policy cannot find it."""
    text = edit(POLICY, "purposes:\n  job-matching: {}", "purposes: [job-matching,\n")
    path = tmp_path / "unclosed.yaml"
    path.write_text(text, encoding="utf-8")
    opener_line = position(text, "[job-matching,")[0]
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(path)
    errors = assert_diagnostics(info.value, path)
    assert any(d.line == opener_line or f"line {opener_line}" in d.message
               for d in errors), (opener_line, [d.render() for d in errors])


def test_fifty_megabyte_policy_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    line = "# " + "x" * 1021 + "\n"
    with path.open("w", encoding="utf-8") as f:
        f.write("version: 1\n")
        f.write(line * (BIG_BYTES // len(line) + 1))
    assert path.stat().st_size > BIG_BYTES

    started = time.monotonic()
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(path)
    assert time.monotonic() - started < 2
    errors = assert_diagnostics(info.value, path)
    assert any(d.code == "too-large" and "MiB" in d.message for d in errors), errors

    started = time.monotonic()
    result = run_cli("check", "-p", path, *FLOW_OPTIONS, timeout=30)
    assert time.monotonic() - started < 10
    assert_clean_input_error(result, "huge.yaml")
    assert "limit" in result.stderr


def test_fifty_megabyte_file_in_a_policy_directory(tmp_path: Path, fg: Run) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    with (tmp_path / "zz-huge.yaml").open("wb") as f:
        f.truncate(BIG_BYTES)  # sparse: 50 MB of NUL bytes
    started = time.monotonic()
    result = fg("check", "-p", tmp_path, *FLOW_OPTIONS, timeout=30)
    assert time.monotonic() - started < 10
    assert_clean_input_error(result, "zz-huge.yaml")


def test_fifty_megabyte_yaml_registry_is_refused(tmp_path: Path, good_policy: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(BIG_BYTES)
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(path, flowguard.load_policy(good_policy))
    assert time.monotonic() - started < 2
    assert any(d.code == "too-large" for d in info.value.diagnostics), info.value.diagnostics


@pytest.mark.parametrize("depth", [500, 990, 5000])
@pytest.mark.parametrize("kind", ["policy", "registry"])
def test_deep_json_below_and_above_the_recursion_limit(tmp_path: Path, good_policy: Path,
                                                        depth: int, kind: str, fg: Run) -> None:
    """JSON is parsed by `json.loads`, which only stops at the interpreter's recursion limit:
    nesting just below it must be refused cleanly too."""
    path = tmp_path / f"deep-{depth}.json"
    path.write_text('{"subjects": {"citizen-0001": {"birth_date": ' + "[" * depth
                    + "]" * depth + "}}}", encoding="utf-8")
    if kind == "policy":
        with pytest.raises(PolicyError) as info:
            flowguard.load_policy(path)
        result = fg("check", "-p", path, *FLOW_OPTIONS)
    else:
        with pytest.raises(RegistryError) as info:  # type: ignore[assignment]
            flowguard.load_registry(path, flowguard.load_policy(good_policy))
        result = fg("check", "-p", good_policy, "-r", path, *FLOW_OPTIONS)
    assert_diagnostics(info.value, path)
    assert_clean_input_error(result, path.name)


def test_missing_directory(tmp_path: Path, fg: Run) -> None:
    missing = tmp_path / "no" / "such" / "policy"
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(missing)
    assert_diagnostics(info.value, missing)
    assert_clean_input_error(fg("check", "-p", missing, *FLOW_OPTIONS), str(missing))


def test_missing_registry_file(tmp_path: Path, good_policy: Path, fg: Run) -> None:
    missing = tmp_path / "consents.yaml"
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(missing, flowguard.load_policy(good_policy))
    assert_diagnostics(info.value, missing)
    assert_clean_input_error(fg("check", "-p", good_policy, "-r", missing, *FLOW_OPTIONS),
                             "consents.yaml")


def test_empty_policy_directory(tmp_path: Path, fg: Run) -> None:
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(tmp_path)
    assert info.value.diagnostics
    assert_clean_input_error(fg("check", "-p", tmp_path, *FLOW_OPTIONS), str(tmp_path))


def test_duplicate_rule_id_across_two_files_names_both(tmp_path: Path, fg: Run) -> None:
    head = POLICY[:POLICY.index("rules:")]
    (tmp_path / "a.yaml").write_text(
        head + "rules:\n  - id: shared-id\n    effect: permit\n    data: [identity.name]\n"
        "    basis: consent\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - id: shared-id\n    effect: forbid\n    data: [health]\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(tmp_path)
    text = "\n".join(d.render() for d in info.value.diagnostics)
    assert "shared-id" in text
    assert "a.yaml" in text and "b.yaml" in text, text
    result = fg("check", "-p", tmp_path, *FLOW_OPTIONS)
    assert_clean_input_error(result, "a.yaml", "b.yaml", "shared-id", place=(2, 9))


def test_duplicate_entity_across_two_files_names_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        "actors:\n  cafe-manager: {organization: cafe, role: manager}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(tmp_path)
    text = "\n".join(d.render() for d in info.value.diagnostics)
    assert "cafe-manager" in text and "a.yaml" in text and "b.yaml" in text, text


def test_errors_in_two_files_of_a_directory_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(edit(POLICY, "special: true", "special: 7"),
                                     encoding="utf-8")
    (tmp_path / "b.yaml").write_text("purposes: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(tmp_path)
    files = {Path(d.file).name for d in info.value.diagnostics if d.file}
    assert files == {"a.yaml", "b.yaml"}, info.value.diagnostics


def test_three_independent_errors_are_reported_at_once(tmp_path: Path, fg: Run) -> None:
    text = edit(POLICY, "majority_age: 18", 'majority_age: "x"')
    text = edit(text, "special: true", "special: 7")
    text = text + "rulez: []\n"
    path = tmp_path / "three.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(path)
    errors = assert_diagnostics(info.value, path)
    assert len(errors) == 3, errors
    lines = sorted(d.line for d in errors if d.line is not None)
    assert lines == sorted([position(text, '"x"')[0], position(text, "special: 7")[0],
                            position(text, "rulez")[0]])
    result = fg("check", "-p", path, *FLOW_OPTIONS)
    assert_clean_input_error(result, "three.yaml")
    assert len([x for x in result.stderr.splitlines() if "three.yaml:" in x]) == 3


def test_reference_errors_are_reported_with_structural_errors(tmp_path: Path) -> None:
    """A misspelt reference is reported in the same run as a type error elsewhere in the
    file, so a user does not fix one batch only to meet the next."""
    text = edit(POLICY, "majority_age: 18", 'majority_age: "x"')
    text = edit(text, "job-consultant: {organization: aalborg-kommune",
                "job-consultant: {organization: aalborg-komune")
    text = edit(text, "data: [identity.name]", "data: [identity.nam]")
    path = tmp_path / "mixed.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(path)
    errors = assert_diagnostics(info.value, path)
    rendered = "\n".join(d.render() for d in errors)
    assert "majority_age" in rendered
    assert "aalborg-komune" in rendered, rendered
    assert "identity.nam" in rendered, rendered
    assert len(errors) == 3, rendered


def test_registry_errors_are_reported_at_once(tmp_path: Path, good_policy: Path) -> None:
    text = edit(REGISTRY, "data: [identity.name]", "data: [identity.nam]")
    text = edit(text, "    given_by:", "    givn_by:")
    text = text + "guardianships: 5\n"
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(path, flowguard.load_policy(good_policy))
    errors = assert_diagnostics(info.value, path)
    rendered = "\n".join(d.render() for d in errors)
    assert "givn_by" in rendered and "guardianships" in rendered, rendered


# --------------------------------------------------------------------------- flows

def test_naive_flow_time_is_rejected_by_the_library() -> None:
    with pytest.raises(ValidationError):
        Flow.model_validate({**FLOW, "at": "2026-03-01T10:00:00"})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_naive_flow_time_in_a_file(tmp_path: Path, good_policy: Path, suffix: str,
                                   fg: Run) -> None:
    path = tmp_path / f"flow{suffix}"
    text = json.dumps({**FLOW, "at": "2026-03-01T10:00:00"})
    path.write_text(text, encoding="utf-8")
    result = fg("check", "-p", good_policy, path)
    assert_clean_input_error(result, path.name, place=position(text, '"2026-03-01T10:00:00"'))
    assert "zone" in result.stderr


def test_naive_flow_time_as_an_option(good_policy: Path, fg: Run) -> None:
    options = [*FLOW_OPTIONS[:-1], "2026-03-01T10:00:00"]
    result = fg("check", "-p", good_policy, *options)
    assert_clean_input_error(result, "at")
    assert "zone" in result.stderr


def test_naive_flow_time_on_stdin(good_policy: Path, fg: Run) -> None:
    result = fg("check", "-p", good_policy, "-",
                     stdin=json.dumps({**FLOW, "at": "2026-03-01T10:00"}))
    assert_clean_input_error(result, "<stdin>")


@pytest.mark.parametrize("bad", [
    pytest.param("[" * DEEP + "]" * DEEP, id="deep-json-list"),
    pytest.param('{"sender": ' + "[" * DEEP + "]" * DEEP + "}", id="deep-json-value"),
    pytest.param('{"sender": "a",', id="malformed-json"),
    pytest.param("", id="empty"),
    pytest.param("null", id="null"),
    pytest.param('{"sender": "a", "sender": "b"}', id="duplicate-key"),
    pytest.param(json.dumps({**FLOW, "colour": "red"}), id="unknown-key"),
    pytest.param(json.dumps({**FLOW, "data": 5}), id="wrong-type"),
])
def test_bad_flow_on_stdin(good_policy: Path, bad: str, fg: Run) -> None:
    assert_clean_input_error(fg("check", "-p", good_policy, "-", stdin=bad), "<stdin>")


def test_oversized_stdin(good_policy: Path, fg: Run) -> None:
    big = json.dumps({**FLOW, "purpose": "x" * (2 * 1024 * 1024)})
    assert_clean_input_error(fg("check", "-p", good_policy, "-", stdin=big), "<stdin>")


def test_duplicate_key_in_a_json_flow_file_is_an_error(tmp_path: Path, good_policy: Path,
                                                       fg: Run) -> None:
    """JSON that names `recipient` twice must not be silently decided for the last one."""
    text = json.dumps(FLOW)[:-1] + ', "recipient": "job-consultant"}'
    path = tmp_path / "flow.json"
    path.write_text(text, encoding="utf-8")
    assert_clean_input_error(fg("check", "-p", good_policy, path), "flow.json")


def test_unknown_ids_in_a_flow_deny_never_permit(good_policy: Path, tmp_path: Path,
                                                 fg: Run) -> None:
    registry_path = tmp_path / "registry.yaml"
    registry_path.write_text(REGISTRY, encoding="utf-8")
    policy = flowguard.load_policy(good_policy)
    engine = Engine(policy, flowguard.load_registry(registry_path, policy))
    assert engine.check(Flow.model_validate(FLOW)).permit  # the baseline flow is permitted
    for key, value in [("sender", "job-consultnt"), ("recipient", "cafe-managr"),
                       ("data", ["identity.nam"]), ("purpose", "job-maching"),
                       ("subprocess", "co-deliver")]:
        decision = engine.check(Flow.model_validate({**FLOW, key: value}))
        assert decision.decision == "deny", key
        assert decision.reason == "UNKNOWN_ENTITY", key

    options = [*FLOW_OPTIONS]
    options[options.index("--recipient") + 1] = "cafe-managr"
    options[options.index("--subject") + 1] = CITIZEN
    result = fg("check", "-p", good_policy, "-r", registry_path, *options, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    decision = json.loads(result.stdout)
    assert decision["decision"] == "deny"
    assert decision["reason"] == "UNKNOWN_ENTITY"
    assert decision["categories"][0]["reasons"][0]["code"] == "UNKNOWN_ENTITY"


def test_bad_test_file_exits_2(tmp_path: Path, fg: Run) -> None:
    path = tmp_path / "tests.yaml"
    path.write_text("policy: .\ncases: {not: a list}\n", encoding="utf-8")
    result = fg("test", path)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 2
    assert "tests.yaml:2:" in result.stderr


# --------------------------------------------------------------------------- no citizen ids

SECRET_REGISTRIES = {
    "birth-date-string": edit(REGISTRY, "birth_date: 1991-05-02", 'birth_date: "long ago"'),
    "birth-date-list": edit(REGISTRY, "birth_date: 1991-05-02", "birth_date: [1991]"),
    "birth-date-bad-day": edit(REGISTRY, "birth_date: 1991-05-02", "birth_date: 1991-02-30"),
    "subject-not-a-mapping": edit(REGISTRY, "{birth_date: 1991-05-02, jurisdiction: DK}",
                                  "born-1991"),
    "subject-unknown-key": edit(REGISTRY, "jurisdiction: DK}", "jurisdiction: DK, name: x}"),
    "duplicate-subject": edit(REGISTRY, "subjects:\n",
                              f"subjects:\n  {CITIZEN}: {{birth_date: 1991-05-02}}\n"),
    "unknown-jurisdiction": edit(REGISTRY, "jurisdiction: DK", "jurisdiction: SE"),
    "naive-given-at": edit(REGISTRY, "09:00:00Z", "09:00:00"),
    "consent-unknown-subject": edit(REGISTRY, f"    subject: {CITIZEN}",
                                    "    subject: citizen-SECRET-999"),
    "guardianship-unknown-subject": REGISTRY + (
        "guardianships:\n  - {id: g-1, guardian: person-SECRET-7, subject: citizen-SECRET-9,"
        " kind: adult, valid_from: 2020-01-01}\n"),
    "guardianship-naive-valid-from": REGISTRY + (
        f"guardianships:\n  - {{id: g-1, guardian: person-SECRET-7, subject: {CITIZEN},"
        " kind: adult, valid_from: 2020-01-01T00:00:00}\n"),
    "consent-bad-subject-type": edit(REGISTRY, f"    subject: {CITIZEN}",
                                     f"    subject: [{CITIZEN}]"),
    "given-by-bad-pattern": edit(REGISTRY, f"    given_by: {CITIZEN}",
                                 '    given_by: "SECRET person 1"'),
}


@pytest.mark.parametrize("name", list(SECRET_REGISTRIES))
def test_no_citizen_identifier_in_registry_errors(name: str, tmp_path: Path,
                                                  good_policy: Path, fg: Run) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(SECRET_REGISTRIES[name], encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(path, flowguard.load_policy(good_policy))
    assert_diagnostics(info.value, path)
    for d in info.value.diagnostics:
        for part in (d.message, d.hint or "", d.file or "", d.render()):
            assert SECRET not in part, d
    assert SECRET not in str(info.value)

    result = fg("check", "-p", good_policy, "-r", path, *FLOW_OPTIONS)
    assert_clean_input_error(result, "registry.yaml")
    assert SECRET not in result.stdout + result.stderr, result.stderr


def test_duplicate_subject_in_a_json_registry_is_an_error(tmp_path: Path,
                                                          good_policy: Path) -> None:
    """In JSON as in YAML: a subject declared twice must not silently replace the first."""
    path = tmp_path / "registry.json"
    path.write_text('{"subjects": {"citizen-SECRET-123": {"birth_date": "1991-05-02"}, '
                    '"citizen-SECRET-123": {"birth_date": "2015-01-01"}}}', encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(path, flowguard.load_policy(good_policy))
    assert SECRET not in str(info.value)

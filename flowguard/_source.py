"""Reading YAML and JSON input files safely, keeping source positions for diagnostics.

Defences, each with a clear diagnostic instead of a crash:
- a size cap per file, checked before anything is parsed;
- YAML aliases are refused (they make "billion laughs" expansions possible);
- a nesting-depth cap, checked on the event stream before any tree is built
  (libyaml's composer recurses in C and would crash the process on deep input).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowguard._plain import plain_json, plain_yaml
from flowguard.errors import Diagnostic

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()

Path_ = tuple[str | int, ...]
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class SourceError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(diagnostic.render())


@dataclass
class Document:
    """One parsed YAML/JSON document and the means to find positions in it."""

    file: str
    data: Any
    node: yaml.Node | None = None
    text: str | None = None
    # a misspelled top-level key read as the one meant: meant -> as written (for positions)
    aliases: dict[str | int, str | int] = field(default_factory=dict)

    def position(self, path: Sequence[str | int], *, at_key: bool = False
                 ) -> tuple[int | None, int | None]:
        """1-based line and column of the value at `path`, or of its closest ancestor;
        `at_key`: of the key of the last step (an unknown key is pointed at, not its value)."""
        node = self.node
        if node is None and self.text is not None:
            try:
                node = _compose_checked(self.text, self.file)
            except SourceError:
                return None, None
            self.node = node
        if node is None:
            return None, None
        best = node
        if path and path[0] in self.aliases:
            path = (self.aliases[path[0]], *path[1:])
        for index, step in enumerate(path):
            if at_key and index == len(path) - 1 and isinstance(best, yaml.MappingNode):
                key_node = _key(best, step)
                if key_node is not None:
                    best = key_node
                    break
            nxt = _child(best, step)
            if nxt is None:
                break
            best = nxt
        return best.start_mark.line + 1, best.start_mark.column + 1

    def diagnostic(
        self,
        path: Sequence[str | int],
        message: str,
        *,
        hint: str | None = None,
        severity: str = "error",
        code: str = "invalid",
        at_key: bool = False,
    ) -> Diagnostic:
        line, column = self.position(path, at_key=at_key)
        return Diagnostic(
            message=message,
            file=self.file,
            line=line,
            column=column,
            hint=hint,
            severity="warning" if severity == "warning" else "error",
            code=code,
        )


def _key(node: yaml.MappingNode, step: str | int) -> yaml.Node | None:
    for key, _value in node.value:
        if isinstance(key, yaml.ScalarNode) and _scalar(key) == step:
            found: yaml.Node = key
            return found
    return None


def _child(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and _scalar(key) == step:
                child_value: yaml.Node = value
                return child_value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) \
            and 0 <= step < len(node.value):
        child: yaml.Node = node.value[step]
        return child
    return None


def _scalar(node: yaml.Node) -> Any:
    try:
        return _constructor.construct_object(node, deep=True)
    except ValueError:
        if node.tag != _TIMESTAMP:
            raise
        # 2026-02-30 looks like a date but is none: kept as written, so that the field
        # reports it with the format to write, together with every other bad date
        value: str = node.value
        return value


def _check_events(text: str, file: str) -> int:
    """Refuse aliases and excessive nesting; return the number of documents."""
    depth = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise SourceError(
                    Diagnostic(
                        "YAML aliases (*name) are not allowed in flowguard files",
                        file,
                        mark.line + 1 if mark else None,
                        mark.column + 1 if mark else None,
                        code="yaml-alias",
                    )
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    raise SourceError(
                        Diagnostic(
                            f"nesting deeper than {MAX_DEPTH} levels",
                            file,
                            mark.line + 1 if mark else None,
                            mark.column + 1 if mark else None,
                            code="too-deep",
                        )
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
    except yaml.MarkedYAMLError as exc:
        raise SourceError(_yaml_diagnostic(exc, file, text)) from None
    except yaml.YAMLError as exc:
        raise SourceError(Diagnostic(f"malformed YAML: {exc}", file, code="yaml")) from None
    return documents


def _yaml_diagnostic(exc: yaml.MarkedYAMLError, file: str, text: str | None = None
                     ) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "malformed YAML"
    if mark is None:
        return Diagnostic(f"malformed YAML: {problem}", file, code="yaml")
    # newer libyaml builds stop deep nesting themselves, before our own check
    if "nesting depth" in problem:
        return Diagnostic(f"malformed YAML: {problem}", file, mark.line + 1, mark.column + 1,
                          code="too-deep")
    opened = exc.context_mark
    message, line, column, hint = plain_yaml(
        problem, exc.context, text, mark.line, mark.column,
        (opened.line, opened.column) if opened is not None else None)
    return Diagnostic(message, file, line, column, code="yaml", hint=hint)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _compose_checked(text: str, file: str) -> yaml.Node | None:
    _check_events(text, file)
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise SourceError(_yaml_diagnostic(exc, file, text)) from None
    return node


def _compose_all_checked(text: str, file: str) -> list[yaml.Node]:
    _check_events(text, file)
    try:
        return [n for n in yaml.compose_all(text, Loader=_Loader) if n is not None]
    except yaml.MarkedYAMLError as exc:
        raise SourceError(_yaml_diagnostic(exc, file, text)) from None


def _to_python(node: yaml.Node, file: str) -> Any:
    if isinstance(node, yaml.ScalarNode):
        try:
            return _scalar(node)
        except (yaml.YAMLError, ValueError) as exc:
            mark = node.start_mark
            raise SourceError(
                Diagnostic(f"bad scalar value: {exc}", file, mark.line + 1, mark.column + 1)
            ) from None
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(child, file) for child in node.value]
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(key_node, file)
            if isinstance(key, list | dict):
                mark = key_node.start_mark
                raise SourceError(
                    Diagnostic("a mapping key must be a scalar", file, mark.line + 1,
                               mark.column + 1)
                )
            if key in result:
                # the key may be a citizen identifier (a subject id): name only its place
                mark = key_node.start_mark
                raise SourceError(
                    Diagnostic("duplicate key: it appears twice in the same mapping", file,
                               mark.line + 1, mark.column + 1, code="duplicate")
                )
            result[key] = _to_python(value_node, file)
        return result
    raise SourceError(Diagnostic(f"unsupported YAML node {node.tag}", file))  # pragma: no cover


def read_text(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """Read a UTF-8 text file, refusing oversized or binary files with a diagnostic."""
    file = str(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise SourceError(Diagnostic(f"cannot read file: {exc.strerror}", file,
                                     code="io")) from None
    if size > max_bytes:
        raise SourceError(
            Diagnostic(
                f"file is {size / 1_048_576:.1f} MiB; the limit is "
                f"{max_bytes / 1_048_576:.0f} MiB",
                file,
                code="too-large",
            )
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(Diagnostic(f"cannot read file: {exc.strerror}", file,
                                     code="io")) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            Diagnostic(f"file is not UTF-8 text (byte {exc.start})", file, code="encoding")
        ) from None


def parse_documents(text: str, file: str, *, as_json: bool | None = None
                    ) -> Iterator[Document]:
    """Parse every YAML document of a text (a JSON text is one document); JSON is chosen
    by `as_json`, or else by the file name's `.json` ending."""
    if as_json if as_json is not None else file.endswith(".json"):
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey:
            # the YAML reader places the duplicate (JSON is YAML here) without echoing it
            yield from parse_documents(text, file, as_json=False)
            raise SourceError(Diagnostic("duplicate key in a JSON object", file,
                                         code="duplicate")) from None
        except RecursionError:
            raise SourceError(Diagnostic("JSON nested too deeply", file, code="too-deep")) \
                from None
        except json.JSONDecodeError as exc:
            message, hint = plain_json(exc.msg)
            raise SourceError(
                Diagnostic(message, file, exc.lineno, exc.colno, code="json", hint=hint)
            ) from None
        yield Document(file, data, text=text)
        return
    for node in _compose_all_checked(text, file):
        yield Document(file, _to_python(node, file), node=node)


def load_documents(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> list[Document]:
    """All documents of one file; an empty file is an error."""
    text = read_text(path, max_bytes=max_bytes)
    documents = list(parse_documents(text, str(path)))
    if not documents or all(d.data is None for d in documents):
        raise SourceError(Diagnostic("file is empty", str(path), 1, 1, code="empty"))
    return documents

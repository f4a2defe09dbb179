"""Reading a job file and the files it names without hanging or running out of memory.

Entry points: `read_regular(path, limit) -> bytes` and `compose(text) -> (loader, root)`.

The limits here guard the loader itself, so they are fixed (a job file cannot raise them before
it has been read); the README and the schema's description document them:

- a job file holds at most `MAX_JOB_BYTES`;
- YAML aliases may not make the document bigger than `MAX_NODES` nodes once expanded (a
  "billion laughs" file of a few hundred bytes stands for 10^9 strings: anything that walks it,
  jsonschema or json.dumps, would run until killed), nor refer to a node they sit inside;
- values nest at most `MAX_DEPTH` deep (the composer recurses: 5000 `[` would end in a
  RecursionError);
- a number is at most `MAX_NUMBER_CHARS` characters (Python refuses to convert an int of more
  than 4300 digits, with a ValueError deep inside PyYAML).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

MAX_JOB_BYTES = 1_048_576  # 1 MiB; thousands of prompts belong in prompts_file:
MAX_NODES = 100_000  # values, keys and list items, every alias counted in full
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class ReadError(OSError):
    """A file that is not a regular file, or is over its limit; the message says which."""


class LimitError(yaml.MarkedYAMLError):
    """The document breaks one of the limits above; `problem_mark` is where."""


def read_regular(path: Path, limit: int, what: str = "file") -> bytes:
    """At most `limit` bytes of the regular file `path`, else `ReadError`.

    A FIFO would block open() and read() forever, /dev/zero never ends and a directory is no
    text: only regular files are read. The check comes before open() (so a FIFO is never
    opened for real) and again on the open file (it may have been swapped in between); the
    open itself does not block, and the read stops one byte past the limit.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ReadError(f"{path} is not a regular file (a {_kind(os.stat(path).st_mode)})")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ReadError(f"{path} is not a regular file (a {_kind(mode)})")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ReadError(f"{path} is over the limit of {limit:,} bytes for a {what}")
    return data


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "directory",
        stat.S_ISFIFO: "FIFO",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISSOCK: "socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts what it builds and stops at the limits."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.expanded = 0  # nodes so far, an alias counting as the whole node it stands for
        self.aliased = False
        self.depth = 0
        self.sizes: dict[str, int] = {}  # anchor -> expanded nodes of its node
        self.open_anchors: set[str] = set()  # anchors of nodes still being composed

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if anchor in self.open_anchors:
                raise _limit(event, f"the alias *{anchor} refers to a value that contains it")
            self.aliased = True
            self._grow(self.sizes.get(anchor, 1), event)
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _limit(event, f"values nest more than {MAX_DEPTH} levels deep")
        self._grow(1, event)
        before = self.expanded
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.sizes[anchor] = self.expanded - before + 1
        self.depth -= 1
        if (
            node is not None
            and node.tag in _NUMBER_TAGS
            and len(str(node.value)) > MAX_NUMBER_CHARS
        ):
            raise _limit(event, f"a number of more than {MAX_NUMBER_CHARS} characters")
        return node

    def _grow(self, nodes: int, event: yaml.Event) -> None:
        self.expanded += nodes
        if self.expanded > MAX_NODES and self.aliased:
            raise _limit(
                event,
                f"the document is bigger than {MAX_NODES:,} values once its aliases are "
                "expanded (a YAML alias bomb?)",
            )
        if self.expanded > MAX_NODES:
            raise _limit(
                event,
                f"the document holds more than {MAX_NODES:,} values; long lists of prompts "
                "belong in prompts_file:",
            )


def _limit(event: yaml.Event, message: str) -> LimitError:
    mark = event.start_mark
    return LimitError(problem=message, problem_mark=mark if isinstance(mark, yaml.Mark) else None)


def compose(text: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """The composed root node of `text` and the loader to construct it with (dispose it after).

    Raises `yaml.YAMLError` (a `LimitError` for a broken limit).
    """
    loader = _BoundedLoader(text)
    try:
        return loader, loader.get_single_node()
    except BaseException:
        loader.dispose()
        raise

"""The prompt that asks a chat model for questions about one chunk, and its override (``--prompt-file``).

A prompt file is plain UTF-8 text with two placeholders, ``{chunk}`` (the chunk's text, required)
and ``{n}`` (questions wanted, optional), and optionally ``{title}``. Any other ``{`` or ``}`` must be
doubled (``{{``), as in Python's ``str.format``. A line ``---`` on its own splits the file into a
system message (above) and a user message (below); without it the whole file is the user message.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from retriever.errors import PairsError

SEPARATOR = "---"
FIELDS = frozenset({"chunk", "n", "title"})

DEFAULT_SYSTEM = (
    "You write the questions that people type into a search box. Each question must be answerable "
    "from the passage alone, must not copy its sentences, and must stand on its own without the passage."
)
DEFAULT_USER = (
    "Passage:\n{chunk}\n\n"
    "Write {n} different questions that this passage answers. Vary them: facts, numbers, reasons. "
    "Answer with a numbered list, one question per line, and nothing else."
)


@dataclass(frozen=True)
class PromptTemplate:
    """A system message (may be empty) and a user message with ``{chunk}`` / ``{n}`` / ``{title}``."""

    user: str = DEFAULT_USER
    system: str = DEFAULT_SYSTEM

    def messages(self, chunk: str, n: int, title: str = "") -> list[dict[str, str]]:
        """Chat messages for one chunk."""
        values = {"chunk": chunk, "n": n, "title": title}
        out = [{"role": "system", "content": self.system.format(**values)}] if self.system.strip() else []
        return out + [{"role": "user", "content": self.user.format(**values)}]


def _check(text: str, where: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise PairsError(f"{where}: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = sorted(n for n in names if n not in FIELDS)
    if unknown:
        raise PairsError(f"{where}: unknown placeholder {{{unknown[0]}}} (use {{chunk}}, {{n}}, {{title}})")
    return names


def load_prompt(path: str | Path | None) -> PromptTemplate:
    """The default template, or the one in ``path`` (checked: it must have ``{chunk}``)."""
    if path is None:
        return PromptTemplate()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PairsError(f"{path}: prompt file is not UTF-8 text") from None
    except OSError as exc:
        raise PairsError(f"{path}: cannot read prompt file ({exc.strerror or exc})") from None
    lines = text.splitlines()
    if SEPARATOR in (line.strip() for line in lines):
        cut = [line.strip() for line in lines].index(SEPARATOR)
        system, user = "\n".join(lines[:cut]).strip(), "\n".join(lines[cut + 1 :]).strip()
    else:
        system, user = "", text.strip()
    names = _check(system, f"{path} (system part)") | _check(user, f"{path} (user part)")
    if "chunk" not in names:
        raise PairsError(f"{path}: the prompt has no {{chunk}} placeholder, so the model would never see the text")
    return PromptTemplate(user=user, system=system)

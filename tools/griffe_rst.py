"""A griffe extension (mkdocs.yml, mkdocstrings' python handler): Flowrra's docstrings are
written with a few reStructuredText habits; render them as Markdown.

- ``:class:`Name```, ``:func:`~mod.fn```, ``:mod:`flowrra.monitor``` (any role) become
  code linked to that object's reference entry when it has one, and plain code otherwise
  (an optional cross-reference never fails the build). A bare name is looked up from the
  module the docstring belongs to first.
- A paragraph ending in ``::`` (the literal-block marker before an indented example) ends
  in ``:``; the indented block below it is a code block in Markdown as it is.

Double backticks (````code````) are already a Markdown code span, and stay.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<>]+?)`")
LITERAL_MARKER = re.compile(r"(?m)(\S)::$|^\s*::\s*$")


def _module_path(obj: griffe.Object) -> str:
    module = obj if isinstance(obj, griffe.Module) else obj.module
    return module.path


def _role(match: re.Match[str], base: str) -> str:
    short, target = match.group(1) == "~", match.group(2).strip().rstrip("()")
    title = target.rsplit(".", 1)[-1] if short else target
    identifier = target if "." in target else f"{base}.{target}"
    if target.startswith("."):
        identifier = base + target
    return (
        f'<autoref identifier="{html.escape(identifier)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def rewrite(text: str, base: str) -> str:
    """``text`` with its roles and literal-block markers in Markdown (``base``: the dotted
    module path bare names are resolved against)."""
    text = ROLE.sub(lambda m: _role(m, base), text)
    return LITERAL_MARKER.sub(lambda m: f"{m.group(1)}:" if m.group(1) else "", text)


class RstToMarkdown(griffe.Extension):
    """Rewrites every docstring as :func:`rewrite` says, once the tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value, _module_path(obj))

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """The top package is not among the objects ``on_object`` sees."""
        self.on_object(obj=pkg)

"""A griffe extension for the API reference: Sphinx roles in docstrings become code spans.

The package's docstrings cross-reference with Sphinx roles (``:func:`ufm.solve```), which
Markdown would print verbatim; this turns each into inline code (`` `ufm.solve` ``). It also
fences reStructuredText "simple tables" (rows between ``====  ====`` borders) so that they keep
their columns, and drops the second colon of reST's ``Example::`` before a literal block.
Only the rendering of the documentation changes; the docstrings do not.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const|term):`~?([^`]+)`")
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")
# reST's "Text::" before a literal block: "Example::" becomes a bold label (not a Google
# "Examples" section, which expects doctests), any other "text::" becomes "text:".
_LABEL = re.compile(r"^(\s*)(Examples?)::\s*$", re.M)
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.M)


def _fence_tables(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _BORDER.match(lines[i]):
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            j = i + 1
            while j < len(lines) and not _BORDER.match(lines[j]):
                j += 1
            if j < len(lines):  # a table: border, rows, border
                out.append(indent + "```text")
                out.extend(lines[i : j + 1])
                out.append(indent + "```")
                i = j + 1
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles and reST simple tables in every docstring before rendering."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        _rewrite(obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        _rewrite(pkg)  # a package's own docstring (on_object does not visit the root)


def _rewrite(obj) -> None:
    if obj.docstring is not None:
        text = _ROLE.sub(r"`\1`", obj.docstring.value)
        text = _LITERAL.sub(r"\1:", _LABEL.sub(r"\1**\2:**", text))
        obj.docstring.value = _fence_tables(text)

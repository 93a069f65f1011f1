"""Checks on a loaded :class:`~tests.browser.harness.Page`, shared by the page tests.

``missing_value_text(page) -> list[str]``
    Every ``nan``/``NaN``/``None``/``NaT``/``<NA>``/``null``/``undefined`` the reader would
    see: in the body text, in SVG text, and in ``alt``/``title``/``aria-label`` attributes.
    ``nan``, ``NaN``, ``NaT`` and ``<NA>`` are flagged wherever they stand. ``None``,
    ``null`` and ``undefined`` are also words: they are flagged when they are the whole text of
    an element (a table cell ``<td>None</td>``) or stand inside a sentence ("the estimate is
    None here"), not when they open a sentence or line ("None: every model was fitted", "None
    of the ..."); ``null`` and ``undefined`` followed by a lower-case word ("the null
    hypothesis", "undefined when") are prose too.
``figure_problems(page) -> list[str]``
    One line per figure without alt text: an ``<img>`` with empty or absent ``alt``, or that
    did not load; an outermost ``<svg>`` without ``aria-label``, ``aria-labelledby`` text or a
    ``<title>`` child (``aria-hidden="true"`` decorations are exempt).
``broken_anchors(page) -> list[str]``
    Every in-page link (``href="#id"``, e.g. of a table of contents) whose target id does not
    exist on the page.
"""

from __future__ import annotations

import re

from .harness import Page

_MISSING = re.compile(r"(?<![\w-])(nan|NaN|NaT|<NA>|None|(?:null|undefined)(?! [a-z]))(?![\w-])")
_WORDS = ("None", "null", "undefined")
#: what may come right before a word that opens a sentence or a line (innerText separates
#: blocks by newlines and table cells by tabs)
_OPENS = re.compile(r"(^|[\n\t.!?])[ \u00a0]*$")

_TEXTS_JS = """
const out = [document.body ? document.body.innerText : ''];
for (const t of document.querySelectorAll('svg text, svg title, svg desc')) out.push(t.textContent);
for (const el of document.querySelectorAll('[alt], [title], [aria-label]')) {
  for (const a of ['alt', 'title', 'aria-label']) {
    if (el.hasAttribute(a)) out.push(el.getAttribute(a));
  }
}
return out;
"""

# elements whose whole visible text is one token (a table cell, a list item, a label)
_WHOLE_JS = """
const tokens = new Set(arguments[0]);
const found = [];
for (const el of document.body.querySelectorAll('*')) {
  if (el.children.length || ['SCRIPT', 'STYLE'].includes(el.tagName)) continue;
  const text = (el.textContent || '').trim();
  if (tokens.has(text)) found.push(`<${el.tagName.toLowerCase()}>${text}`);
}
return found;
"""

_FIGURES_JS = """
const problems = [];
let i = 0;
for (const img of document.querySelectorAll('img')) {
  i += 1;
  const alt = (img.getAttribute('alt') || '').trim();
  const src = (img.getAttribute('src') || '').slice(0, 40);
  if (!alt) problems.push(`img ${i} (${src}): no alt text`);
  else if (!(img.complete && img.naturalWidth > 0)) {
    problems.push(`img ${i} (${alt}): did not load`);
  }
}
let j = 0;
for (const svg of document.querySelectorAll('svg')) {
  if (svg.parentElement && svg.parentElement.closest('svg')) continue;  // only outermost
  j += 1;
  if (svg.getAttribute('aria-hidden') === 'true') continue;
  let name = (svg.getAttribute('aria-label') || '').trim();
  const by = svg.getAttribute('aria-labelledby');
  if (!name && by) name = by.split(/\\s+/).map(id => {
    const el = document.getElementById(id); return el ? el.textContent : ''; }).join(' ').trim();
  if (!name) {
    const t = Array.from(svg.children).find(c => c.tagName.toLowerCase() === 'title');
    if (t) name = t.textContent.trim();
  }
  if (!name) problems.push(`svg ${j}: no aria-label, aria-labelledby or <title>`);
}
return problems;
"""


_ANCHORS_JS = """
const broken = [];
for (const a of document.querySelectorAll('a[href^="#"]')) {
  const id = decodeURIComponent(a.getAttribute('href').slice(1));
  if (id && !document.getElementById(id) && !document.getElementsByName(id).length) {
    broken.push(a.getAttribute('href'));
  }
}
return broken;
"""


def broken_anchors(page: Page) -> list[str]:
    """Every ``href="#id"`` on the page whose target does not exist."""
    return list(page.driver.execute_script(_ANCHORS_JS))


def _found(page: Page) -> list[tuple[str, str]]:
    """(token, context) of every missing-value token shown (see the module docstring)."""
    found = []
    for text in page.driver.execute_script(_TEXTS_JS):
        text = text or ""
        for m in _MISSING.finditer(text):
            if m.group(1) in _WORDS and _OPENS.search(text[: m.start()]):
                continue  # opens a sentence or a line: prose, unless it is all there is
            context = text[max(m.start() - 40, 0): m.end() + 40].replace("\n", " | ")
            found.append((m.group(1), context))
    for whole in page.driver.execute_script(_WHOLE_JS, list(_WORDS)):
        found.append((whole.rsplit(">", 1)[1], whole))
    return found


def missing_value_text(page: Page) -> list[str]:
    """Every missing-value token shown on the page (see the module docstring)."""
    return [token for token, _ in _found(page)]


def missing_value_context(page: Page) -> list[str]:
    """The same, each with the text around it (or its element), for a failure message."""
    return [context for _, context in _found(page)]


def figure_problems(page: Page) -> list[str]:
    """One line per figure without alt text or that did not load (see the module docstring)."""
    return list(page.driver.execute_script(_FIGURES_JS))

"""Checks on a loaded :class:`~tests.browser.harness.Page`, shared by the page tests.

``missing_value_text(page) -> list[str]``
    Every ``nan``/``NaN``/``None``/``NaT``/``<NA>``/``null``/``undefined`` the reader would
    see: in the body text, in SVG text, and in ``alt``/``title``/``aria-label`` attributes.
    ``None``, ``null`` or ``undefined`` followed by a lower-case word ("None of the ...",
    "the null hypothesis") is prose and not flagged.
``figure_problems(page) -> list[str]``
    One line per figure without alt text: an ``<img>`` with empty or absent ``alt``, or that
    did not load; an outermost ``<svg>`` without ``aria-label``, ``aria-labelledby`` text or a
    ``<title>`` child (``aria-hidden="true"`` decorations are exempt).
"""

from __future__ import annotations

import re

from .harness import Page

_MISSING = re.compile(r"(?<![\w-])(nan|NaN|NaT|<NA>|(?:null|undefined|None)(?! [a-z]))(?![\w-])")

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


def missing_value_text(page: Page) -> list[str]:
    """Every missing-value token shown on the page (see the module docstring)."""
    texts = page.driver.execute_script(_TEXTS_JS)
    return [m.group(1) for t in texts for m in _MISSING.finditer(t or "")]


def missing_value_context(page: Page, width: int = 40) -> list[str]:
    """The same tokens with the text around them, for a failure message."""
    texts = page.driver.execute_script(_TEXTS_JS)
    return [(t[max(m.start() - width, 0): m.end() + width]).replace("\n", " | ")
            for t in texts for m in _MISSING.finditer(t or "")]


def figure_problems(page: Page) -> list[str]:
    """One line per figure without alt text or that did not load (see the module docstring)."""
    return list(page.driver.execute_script(_FIGURES_JS))

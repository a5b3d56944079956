"""French and English texts: which language an answer speaks, and the text in that language.

Texts for people (API error details, adapter error reasons, code-list labels) are gettext
messages from the catalogues in ``gateway/locale/<lang>/LC_MESSAGES/gateway.po`` (compiled
``.mo`` beside them; see docs/translations.md). Code marks a text with ``msg(template,
**params)``: a ``str`` that reads as the English text, and remembers its template and
parameters so ``translate`` can render it in another language later, at the edge that knows
the reader's language. Parameters name fields, parameters and rules, never submitted values.

Code-list labels live in the same catalogues under the context ``code`` (one label per
value), or ``code.<list>`` where a value needs another label in one list.

The catalogues are read once, at import, so no request reads a file.
"""

from __future__ import annotations

import contextvars
import gettext
import re
from pathlib import Path
from typing import Any, Iterable

#: Languages the gateway answers in; the first is the default (and the language of msgids).
LANGUAGES: tuple[str, ...] = ("en", "fr")
DEFAULT_LANGUAGE = LANGUAGES[0]
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "gateway"

_CATALOGUES: dict[str, gettext.NullTranslations] = {
    lang: gettext.translation(DOMAIN, str(LOCALE_DIR), languages=[lang], fallback=True) for lang in LANGUAGES
}

#: The language of the request being answered (set by the API's language middleware).
CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("gateway_language", default=DEFAULT_LANGUAGE)


class Message(str):
    """A translatable text: reads as its English rendering, keeps template and parameters."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> "Message":
        self = super().__new__(cls, template.format(**params) if params else template)
        self.template = template
        self.params = params
        return self

    def __reduce__(self) -> Any:
        return (_rebuild, (self.template, self.params))


def _rebuild(template: str, params: dict[str, Any]) -> Message:
    return Message(template, **params)


class Joined(str):
    """Several texts joined by a separator, each translated on its own."""

    separator: str
    parts: tuple[Any, ...]

    def __new__(cls, separator: str, parts: Iterable[Any]) -> "Joined":
        kept = tuple(parts)
        self = super().__new__(cls, separator.join(str(p) for p in kept))
        self.separator = separator
        self.parts = kept
        return self


def msg(template: str, **params: Any) -> Message:
    """Mark ``template`` (a ``str.format`` template, English) for translation, with its parameters."""
    return Message(template, **params)


def translate(text: Any, language: str | None = None) -> str:
    """``text`` in ``language`` (default: the current request's): Messages translated, other text as is."""
    lang = language or CURRENT.get()
    if isinstance(text, Joined):
        return text.separator.join(translate(p, lang) for p in text.parts)
    if not isinstance(text, Message):
        return str(text)
    if lang == DEFAULT_LANGUAGE:
        return str(text)
    template = _CATALOGUES[lang].gettext(text.template)
    if not text.params:
        return template
    return template.format(**{k: translate(v, lang) for k, v in text.params.items()})


def code_label(code_list: str, value: str, language: str | None = None) -> str | None:
    """The label of ``value`` in code list ``code_list``, or None when the catalogue has none."""
    catalogue = _CATALOGUES[language or CURRENT.get()]
    for context in (f"code.{code_list}", "code"):
        label = catalogue.pgettext(context, value)
        if label != value or _has(catalogue, context, value):
            return label
    return None


def _has(catalogue: gettext.NullTranslations, context: str, msgid: str) -> bool:
    """True if the catalogue holds ``msgid`` in ``context`` (its label may equal the code, e.g. "IOM")."""
    entries = getattr(catalogue, "_catalog", {})
    return f"{context}\x04{msgid}" in entries


_TAG = re.compile(r"^(?:\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


def parse_accept_language(header: str) -> list[tuple[str, float]]:
    """The (language range, q) pairs of an Accept-Language header (RFC 9110), malformed entries dropped."""
    found: list[tuple[str, float]] = []
    for item in header.split(","):
        tag, *params = (part.strip() for part in item.split(";"))
        if not tag or not _TAG.match(tag):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.match(value) else -1.0
        if q >= 0:
            found.append((tag.lower(), q))
    return found


def negotiate(header: str | None) -> str:
    """The language of the answer: the one the client weights highest (ties: listed first), else English.

    A language's weight is the highest q of the ranges with its primary subtag ("fr-CA" counts
    for French), else the q of "*"; languages weighted 0 are refused; if every language is
    refused or none is named, the answer is in English.
    """
    if not header:
        return DEFAULT_LANGUAGE
    ranges = parse_accept_language(header)
    weights: dict[str, tuple[float, int]] = {}
    wildcard: tuple[float, int] | None = None
    for position, (tag, q) in enumerate(ranges):
        primary = tag.split("-", 1)[0]
        if primary == "*":
            wildcard = wildcard if wildcard is not None and wildcard[0] >= q else (q, position)
        elif primary in LANGUAGES and (primary not in weights or q > weights[primary][0]):
            weights[primary] = (q, weights.get(primary, (0.0, position))[1])
    for lang in LANGUAGES:
        if lang not in weights and wildcard is not None:
            weights[lang] = wildcard
    acceptable = [(-q, position, lang) for lang, (q, position) in weights.items() if q > 0]
    return min(acceptable)[2] if acceptable else DEFAULT_LANGUAGE

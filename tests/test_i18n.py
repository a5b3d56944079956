"""French and English: language negotiation, translatable texts, and the catalogues kept whole.

The catalogue tests fail when a text marked with ``msg(...)`` in the code has no French
translation, when a translation drops or invents a ``{placeholder}``, when a compiled .mo
disagrees with its .po, when the .pot is older than the code or the schemas, or when an
enumerated value of a published schema has no label in one of the languages.
"""

from __future__ import annotations

import gettext
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.errors import MissingFieldError, UnmappableValueError, adapter_detail
from gateway.code_lists import COUNTRY_LISTS, code_lists, label, labels
from gateway.i18n import LANGUAGES, LOCALE_DIR, Joined, Message, msg, negotiate, parse_accept_language, translate
from tests.support.hypothesis_profiles import scaled

ROOT = Path(__file__).resolve().parent.parent
POT = LOCALE_DIR / "gateway.pot"


def _po(lang: str):
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "gateway.po", "rb") as f:
        return read_po(f)


def _extracted() -> set[tuple[str | None, str]]:
    """(context, msgid) of every message the code and the schemas hold now (babel.cfg, keyword msg)."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {"msg": None, "pgettext": ((1, "c"), 2), "_": None}  # _(): the workspace templates
    found: set[tuple[str | None, str]] = set()
    for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        found.add((context, message))
    return found


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# --- negotiation -------------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [
    (None, "en"), ("", "en"), ("fr", "fr"), ("FR", "fr"), ("fr-NE", "fr"), ("fr-CA, en;q=0.9", "fr"),
    ("en-GB, fr;q=0.9", "en"), ("en;q=0.5, fr;q=0.6", "fr"), ("de", "en"), ("de, fr;q=0.1", "fr"),
    ("ha, fr;q=0.8, en;q=0.7", "fr"), ("*", "en"), ("fr;q=0, *", "en"), ("en;q=0, *", "fr"),
    ("en;q=0, fr;q=0", "en"), ("fr, en", "fr"), ("en, fr", "en"), ("fr;q=1.5", "en"), ("fr;q=abc, en", "en"),
    ("fr;q=0.8, fr-NE;q=0.9, en;q=0.85", "fr"), (";;,,", "en"), ("fr ; q = 0.7 , en;q=0.6", "fr"),
])
def test_negotiate(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


TAGS = st.sampled_from(["en", "fr", "en-GB", "fr-NE", "fr-CA", "de", "ha", "*", "EN", "Fr-ml"])
QS = st.integers(0, 1000).map(lambda n: n / 1000)


def _entry(tag: str, q: float | None) -> str:
    return tag if q is None else f"{tag};q={q:.3f}".rstrip("0").rstrip(".") if q not in (0, 1) else f"{tag};q={int(q)}"


@settings(max_examples=scaled(400), deadline=None)
@given(st.lists(st.tuples(TAGS, st.none() | QS), max_size=6))
def test_negotiation_follows_the_weights(entries: list[tuple[str, float | None]]) -> None:
    header = ", ".join(_entry(tag, q) for tag, q in entries)
    assert [(t.lower(), 1.0 if q is None else q) for t, q in entries] == parse_accept_language(header)
    chosen = negotiate(header)
    assert chosen in LANGUAGES

    def weight(lang: str) -> float:
        named = [1.0 if q is None else q for t, q in entries if t.lower().split("-")[0] == lang]
        stars = [1.0 if q is None else q for t, q in entries if t == "*"]
        return max(named) if named else max(stars, default=0.0)

    other = next(lang for lang in LANGUAGES if lang != chosen)
    # The chosen language weighs at least as much as the other one, and a refused language
    # (weight 0) is chosen only as the default, when nothing acceptable is left.
    assert weight(chosen) >= weight(other)
    if weight(chosen) == 0:
        assert chosen == "en" and weight(other) == 0
    if weight("fr") > weight("en"):
        assert chosen == "fr"


@settings(max_examples=scaled(300), deadline=None)
@given(st.text(max_size=80))
def test_any_header_gives_a_language(header: str) -> None:
    assert negotiate(header) in LANGUAGES


# --- messages ------------------------------------------------------------------------------


def test_a_message_reads_as_english_and_translates_with_its_parameters() -> None:
    text = msg("query parameter {name} must be an integer from {minimum} to {maximum}", name="limit",
               minimum=1, maximum=500)
    assert text == "query parameter limit must be an integer from 1 to 500"
    assert translate(text, "en") == text
    assert translate(text, "fr") == "le paramètre de requête limit doit être un entier de 1 à 500"
    nested = Joined("; ", [msg("{path}: {message}", path="$.a", message=msg("must be a list")), "plain"])
    assert translate(nested, "fr") == "$.a : doit être une liste; plain"
    assert translate("not marked", "fr") == "not marked"
    assert isinstance(text, str) and isinstance(text, Message)


def test_adapter_errors_render_field_and_rule_in_both_languages() -> None:
    coded = UnmappableValueError("sexe", "'Q' is not in the code list for sexe")
    assert adapter_detail(coded) == "sexe: is not in the code list for sexe"
    assert translate(adapter_detail(coded), "fr") == "sexe : ne figure pas dans la liste de codes « sexe »"
    missing = MissingFieldError("pays_origine", "is required when region_origine is given")
    assert translate(adapter_detail(missing), "fr") == "pays_origine : est obligatoire quand region_origine est renseigné"
    # A reason the table does not know stays as it is (English), never dropped.
    assert adapter_detail(UnmappableValueError("x", "brand new reason")) == "x: brand new reason"


# --- the catalogues ----------------------------------------------------------------------------


def test_every_message_in_the_code_has_a_french_translation_with_the_same_placeholders() -> None:
    french = {(m.context, m.id): m for m in _po("fr") if m.id}
    for key in _extracted():
        entry = french.get(key)
        assert entry is not None and entry.string and not entry.fuzzy, f"no French for {key}"
        if key[0] is None:
            assert _fields(entry.string) == _fields(key[1]), key


def test_the_template_is_current() -> None:
    with open(POT, "rb") as f:
        template = {(m.context, m.id) for m in read_po(f) if m.id}
    assert template == _extracted(), "run the extract/update/compile commands of docs/translations.md"
    for lang in LANGUAGES:
        assert {(m.context, m.id) for m in _po(lang) if m.id} == template, lang


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_mo_matches_its_po(lang: str) -> None:
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / "gateway.mo", "rb") as f:
        compiled = gettext.GNUTranslations(f)
    source = [m for m in _po(lang) if m.id and m.string and not m.fuzzy]
    for m in source:
        got = compiled.pgettext(m.context, m.id) if m.context else compiled.gettext(m.id)
        assert got == m.string, f"{lang}: {m.context} {m.id} (recompile: docs/translations.md)"
    # Nothing in the .mo that the .po no longer has (the header entry aside).
    assert len(compiled._catalog) - 1 == len(source)  # type: ignore[attr-defined]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_enum_value_of_every_published_schema_has_a_label(lang: str) -> None:
    lists = code_lists()
    assert {"purpose", "sex", "needs.medical_urgency", "guardian.role", "criminal_justice.cooperation_decision",
            "return.plan.transport_mode", "country_code"} <= set(lists)
    assert "criminal_justice_cooperation" in lists["purpose"] and "international_protection" in lists["purpose"]
    for name, values in lists.items():
        for value in values:
            assert label(name, value, lang), (lang, name, value)
    assert labels("purpose", "fr")["family_tracing"] == "Recherche familiale"
    assert labels("country_code", "fr")["NE"] == "Niger" and labels("country_code", "en")["CI"] == "Côte d’Ivoire"
    assert labels("sex", "en")["female"] == "Female"


def test_code_lists_cover_every_enumeration_outside_conditions() -> None:
    """Every string enum of every schema file lies in some list (subsets in conditions included)."""
    import json

    def enums(node):
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                yield node["enum"]
            for child in node.values():
                yield from enums(child)
        elif isinstance(node, list):
            for child in node:
                yield from enums(child)

    labelled = {v for name, values in code_lists().items() for v in values}
    for path in sorted((ROOT / "schemas").glob("v*/*.schema.json")):
        for values in enums(json.loads(path.read_text(encoding="utf-8"))):
            strings = [v for v in values if isinstance(v, str)]
            assert set(strings) <= labelled, (path.name, set(strings) - labelled)
    assert not COUNTRY_LISTS - set(code_lists())

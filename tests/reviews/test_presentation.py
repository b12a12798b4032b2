"""How the reviewer app shows a document: fields, chips and word diffs."""

from reviews.forms import OutputEditForm, output_choices
from reviews.presentation import output_changes, present, title_and_excerpt, word_diff


def test_text_confidences_labels_and_nested_values_each_get_their_look():
    document = {"draft": "Line one.\n\nLine two.", "label": "refund", "confidence": 0.42, "tags": ["vip", "late"],
                "meta": {"lang": "en", "pages": 2}, "note": None, "ok": True}  # fmt: skip
    shown = present(document)
    kinds = {f.key: f.kind for f in shown.children}
    assert kinds == {"draft": "text", "label": "chip", "confidence": "confidence", "tags": "chips",
                     "meta": "object", "note": "empty", "ok": "flag"}  # fmt: skip
    confidence = next(f for f in shown.children if f.key == "confidence")
    assert (confidence.percent, confidence.level) == ("42%", "low")
    meta = next(f for f in shown.children if f.key == "meta")
    assert [(c.key, c.kind) for c in meta.children] == [("lang", "text"), ("pages", "number")]


def test_a_long_label_is_prose_and_a_deep_value_stays_json():
    assert present("x" * 200, "label").kind == "text"
    deep: dict = {}
    node = deep
    for _ in range(12):
        node["a"] = {}
        node = node["a"]
    assert "json" in repr(present(deep))


def test_the_title_and_excerpt_come_from_the_output_under_review():
    output = {"subject": "Refund   please", "draft": "We are sorry.\nA refund is on its way " + "x" * 300}
    title, excerpt = title_and_excerpt(output, "subject")
    assert title == "Refund please"
    assert excerpt.startswith("We are sorry. A refund") and len(excerpt) == 160 and excerpt.endswith("x…")
    assert title_and_excerpt(output, "") == ("", excerpt)
    assert title_and_excerpt(None, "subject") == ("", "")
    assert title_and_excerpt({"subject": "Short", "body": "y" * 200}, "subject") == ("Short", "y" * 159 + "…")


def test_a_word_diff_keeps_the_words_that_stayed():
    assert word_diff("We will look into it and reply.", "We will refund it and reply.") == [
        ("same", "We will "), ("removed", "look into "), ("added", "refund "), ("same", "it and reply.")]  # fmt: skip
    changes = output_changes({"draft": "a b", "n": 1, "same": "x"}, {"draft": "a c", "n": 2, "same": "x"})
    assert [c.key for c in changes] == ["draft", "n"]


def test_the_output_shape_names_choices_from_labels_and_enums_before_the_gate():
    snapshot = {
        "input_schema": {"properties": {"tone": {"enum": ["warm", "formal"]}}},
        "steps": [
            {"position": 1, "kind": "parse", "config": {"format": "json", "labels": ["refund", "other"]}},
            {"position": 2, "kind": "gate", "config": {}},
            {"position": 3, "kind": "parse", "config": {"format": "json", "labels": ["late"]}},
        ],
    }
    assert output_choices(snapshot, 2) == {"label": ["refund", "other"], "tone": ["warm", "formal"]}


def test_a_text_area_sent_with_crlf_line_ends_changes_nothing_it_did_not_edit():
    original = {"draft": "One.\n\nTwo.", "label": "refund"}
    form = OutputEditForm({"field_0": "One.\r\n\r\nTwo.", "field_1": "refund"}, original=original)
    assert form.is_valid() and form.cleaned_data["edited_output"] == original
    form = OutputEditForm({"field_0": "One.\r\n\r\nThree.", "field_1": "refund"}, original=original)
    assert form.is_valid() and form.cleaned_data["edited_output"]["draft"] == "One.\n\nThree."

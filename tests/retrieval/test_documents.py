"""Titles from what indexes store: Pyserini's BEIR indexes, MS MARCO's ``contents``, reasonrank's own indexes."""

from __future__ import annotations

import json

from reasonrank.retrieval.documents import as_candidates, read_raw


def test_a_title_is_what_the_text_begins_with_and_empty_for_untitled_documents():
    beir = json.dumps({"_id": "4983", "title": "Microstructural development", "text": "Alterations of the brain."})
    assert read_raw(beir) == (
        "Microstructural development Alterations of the brain.", "Microstructural development")
    marco = json.dumps({"id": "4380635", "contents": "Fahrenheit Scale-Daniel Gabriel Fahrenheit."})
    assert read_raw(marco) == ("Fahrenheit Scale-Daniel Gabriel Fahrenheit.", "")
    title = "Microstructural development"
    ours = json.dumps({"id": "4983", "contents": f"{title} Alterations.", "title": title})
    assert read_raw(ours) == (f"{title} Alterations.", title)
    stale = json.dumps({"id": "1", "contents": "Another text entirely.", "title": "Microstructural development"})
    assert read_raw(stale)[1] == ""  # a title the text does not begin with is no title of this text
    assert read_raw(json.dumps({"_id": "2", "title": "Only a title", "text": ""})) == ("Only a title", "")
    assert read_raw(json.dumps({"_id": "3", "title": "", "text": "Untitled."})) == ("Untitled.", "")
    assert read_raw("plain text, not JSON") == ("plain text, not JSON", "")


def test_dict_candidates_may_carry_a_title():
    [candidate] = as_candidates([{"docid": "d", "text": "Llamas Llamas are camelids.", "title": "Llamas"}])
    assert (candidate.text, candidate.title) == ("Llamas Llamas are camelids.", "Llamas")

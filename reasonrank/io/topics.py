"""Topics (queries) and relevance judgments from files, Pyserini names or ir_datasets.

A spec is one of:

* a file: TSV (``qid<TAB>text``), BEIR ``queries.jsonl`` (``_id``, ``text``), a BRIGHT original jsonl
  (``id``, ``query``, ``reasoning``, ``excluded_ids``) or a rank_llm request file (its queries); qrels files are
  TREC ``qid 0 docid rel``;
* ``irds:<dataset id>``, read with ir_datasets;
* anything else is a Pyserini topic or qrels name (``dl19-passage``, ``beir-v1.0.0-scifact-test``,
  ``bright-biology``). Anserini (Pyserini 1.x) or Pyserini (2.x, which also downloads its list of names) fetches
  those from GitHub on first use and caches them, so offline they only work once cached.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonrank.errors import UserError
from reasonrank.io.jsonl import parse_object
from reasonrank.io.text import is_run_token, numbered_lines
from reasonrank.retrieval.java import PyseriniCatalogUnavailable, import_pyserini
from reasonrank.types import Query

IRDS_PREFIX = "irds:"
TOPIC_FILE_SUFFIXES = (".tsv", ".txt", ".jsonl", ".json")
NOT_AN_ID = "N/A"  # BRIGHT writes ["N/A"] where a query has nothing to exclude


def load_topics(spec: str, query_field: str = "query") -> list[Query]:
    """Queries in the order the source lists them.

    ``query_field`` picks the text: ``query`` is the usual query (Pyserini's ``title``); for a BRIGHT original
    jsonl ``reasoning`` gives the reasoning-query variant; any other name is read from the record as it is.
    """
    spec = str(spec)
    if spec.startswith(IRDS_PREFIX):
        return _irds_topics(spec[len(IRDS_PREFIX):], query_field)
    path = Path(spec).expanduser()
    if path.is_file():
        return _file_topics(path, query_field)
    if path.exists():
        raise UserError(f"topics {spec} is a folder: pass a topics file (TSV or jsonl) or a Pyserini topic name")
    if _looks_like_path(spec):
        raise UserError(f"topics file not found: {spec}")
    return _pyserini_topics(spec, query_field)


def load_qrels(spec: str) -> dict[str, dict[str, int]]:
    """``{qid: {docid: relevance}}`` from a TREC qrels file, a Pyserini qrels name or ``irds:<id>``."""
    spec = str(spec)
    if spec.startswith(IRDS_PREFIX):
        return _irds_qrels(spec[len(IRDS_PREFIX):])
    path = Path(spec).expanduser()
    if path.is_file():
        return read_trec_qrels(path)
    if path.exists():
        raise UserError(f"qrels {spec} is a folder: pass a TREC qrels file or a Pyserini qrels name")
    if _looks_like_path(spec):
        raise UserError(f"qrels file not found: {spec}")
    return read_trec_qrels(Path(_pyserini_qrels_file(spec)))


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Parse ``qid iteration docid relevance`` lines (spaces or tabs)."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise UserError(f"{path}:{number}: a qrels line is `qid 0 docid relevance`, got {len(fields)} fields")
        qid, _, docid, relevance = fields
        try:
            qrels.setdefault(qid, {})[docid] = int(relevance)
        except ValueError:
            raise UserError(f"{path}:{number}: relevance must be an integer, got {relevance!r}") from None
    if not qrels:
        raise UserError(f"{path}: no judgments found in the qrels file")
    return qrels


# --- files -----------------------------------------------------------------------------------------------


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.lower().endswith((*TOPIC_FILE_SUFFIXES, ".gz"))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with 1-based line numbers, so every error can name ``file:line``."""
    return ((number, line) for number, line in numbered_lines(path, "topics or qrels file") if line.strip())


def _file_topics(path: Path, query_field: str) -> list[Query]:
    from reasonrank.io.rank_llm import is_rank_llm_file, read_rank_llm

    if is_rank_llm_file(path):  # rank_llm requests carry their queries
        queries = _QueryCollector(path)
        for request in read_rank_llm(path):
            queries.add(None, request.query.qid, request.query.text)
        return queries.result()
    if path.name.lower().endswith((".jsonl", ".json")):
        return _jsonl_topics(path, query_field)
    if query_field != "query":
        raise UserError(f"{path}: a TSV topics file has only one query text; drop --query-field {query_field}")
    return _tsv_topics(path)


def _tsv_topics(path: Path) -> list[Query]:
    queries = _QueryCollector(path)
    for number, line in _lines(path):
        qid, tab, text = line.partition("\t")
        if not tab:
            raise UserError(f"{path}:{number}: a topics line is `qid<TAB>query text`, found no tab")
        queries.add(number, qid.strip(), text)
    return queries.result()


def _jsonl_topics(path: Path, query_field: str) -> list[Query]:
    queries = _QueryCollector(path)
    for number, line in _lines(path):
        record = parse_object(line, f"{path}:{number}")
        if "_id" in record:  # BEIR queries.jsonl
            field = "text" if query_field == "query" else query_field
            queries.add(number, str(record["_id"]), _text_field(record, field, path, number))
        elif "id" in record and "query" in record:  # BRIGHT original examples
            excluded = _id_list(record.get("excluded_ids", []), path, number)
            queries.add(number, str(record["id"]), _text_field(record, query_field, path, number), excluded)
        else:
            raise UserError(
                f"{path}:{number}: unknown topics record: expected BEIR (`_id`, `text`) or BRIGHT (`id`, `query`) keys"
            )
    return queries.result()


def _text_field(record: dict[str, Any], field: str, path: Path, number: int) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        keys = ", ".join(k for k, v in record.items() if isinstance(v, str))
        raise UserError(f"{path}:{number}: no text field {field!r} (text fields here: {keys})")
    return value


def _id_list(value: Any, path: Path, number: int) -> frozenset[str]:
    """BRIGHT id lists arrive as JSON lists or as Python-literal strings such as ``"['a', 'b']"``."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value) if value.strip().startswith("[") else [value]
        except (ValueError, SyntaxError):
            raise UserError(f"{path}:{number}: excluded_ids is not a list literal: {value[:60]!r}") from None
    if not isinstance(value, list | tuple):
        raise UserError(f"{path}:{number}: excluded_ids must be a list of document ids")
    return frozenset(str(docid) for docid in value if str(docid) != NOT_AN_ID)


class _QueryCollector:
    """Checks what every topics source must satisfy: unique qids and non-empty text."""

    def __init__(self, source: str | Path) -> None:
        self.source = source
        self.queries: list[Query] = []
        self.first_seen: dict[str, int | None] = {}

    def add(self, where: int | None, qid: str, text: str, excluded: frozenset[str] = frozenset()) -> None:
        at = f"{self.source}:{where}" if where is not None else f"{self.source}"
        if not qid:
            raise UserError(f"{at}: empty query id")
        if not is_run_token(qid):
            raise UserError(f"{at}: query id {qid!r} holds whitespace or an invisible mark: a TREC run line "
                            "needs ids of one visible word")
        if qid in self.first_seen:
            first = self.first_seen[qid]
            raise UserError(f"{at}: duplicate query id {qid!r}" + (f" (first on line {first})" if first else ""))
        if not text.strip():
            raise UserError(f"{at}: query {qid!r} has empty text")
        self.first_seen[qid] = where
        self.queries.append(Query(qid, text, excluded))

    def result(self) -> list[Query]:
        if not self.queries:
            raise UserError(f"{self.source}: no queries found")
        return self.queries


# --- Pyserini names --------------------------------------------------------------------------------------


def _pyserini_topics(name: str, query_field: str) -> list[Query]:
    hint = "pass a topics file (TSV qid<TAB>query) instead"
    search = _pyserini_search("topics", name, hint)
    from jnius import JavaException  # after Pyserini's import, which puts Anserini on the JVM's classpath

    try:
        topics = search.get_topics(name)
    except ValueError:
        raise UserError(
            f"unknown topics {name!r}: not a file and not a Pyserini topic name (e.g. dl19-passage)"
        ) from None
    except (JavaException, OSError) as error:  # Anserini's (Pyserini 1.x) or urllib's (2.x) download
        raise _download_failure("topics", name, _reason(error), hint) from None
    field = "title" if query_field == "query" else query_field
    queries = _QueryCollector(f"Pyserini topics {name}")
    for qid, fields in topics.items():
        if field not in fields:
            raise UserError(f"Pyserini topics {name} have no field {field!r} (fields: {', '.join(sorted(fields))})")
        queries.add(None, str(qid), str(fields[field]))
    return queries.result()


def _pyserini_qrels_file(name: str) -> str:
    hint = "pass a TREC qrels file instead"
    search = _pyserini_search("qrels", name, hint)
    from jnius import JavaException  # after Pyserini's import, which puts Anserini on the JVM's classpath

    try:
        return search.get_qrels_file(name)
    except FileNotFoundError:
        raise UserError(
            f"unknown qrels {name!r}: not a file and not a Pyserini qrels name (e.g. dl19-passage)"
        ) from None
    except (JavaException, OSError) as error:  # Anserini's (Pyserini 1.x) or urllib's (2.x) download
        raise _download_failure("qrels", name, _reason(error), hint) from None


def _pyserini_search(what: str, name: str, hint: str):
    """``pyserini.search``, whose import in Pyserini 2.x downloads the prebuilt-index catalog."""
    try:
        return import_pyserini("pyserini.search")
    except PyseriniCatalogUnavailable as error:
        raise _download_failure(what, name, error.reason, hint) from None


def _download_failure(what: str, name: str, reason: str, hint: str) -> UserError:
    return UserError(f"could not download Pyserini {what} {name!r} ({reason}; offline?): {hint}")


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(getattr(error, 'reason', error)).splitlines() or [''])[0][:100]}"


# --- ir_datasets -----------------------------------------------------------------------------------------


def _irds_dataset(dataset_id: str):
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise UserError(f"unknown ir_datasets id {dataset_id!r}: see https://ir-datasets.com for the ids") from None


def _irds_failure(dataset_id: str, what: str, error: Exception) -> UserError:
    reason = str(error.args[0] if error.args else error).splitlines()[0][:120]
    return UserError(
        f"ir_datasets could not provide {what} of {dataset_id!r} ({type(error).__name__}: {reason}); "
        f"offline, pass local files instead"
    )


def _irds_topics(dataset_id: str, query_field: str) -> list[Query]:
    dataset = _irds_dataset(dataset_id)
    if not dataset.has_queries():
        raise UserError(f"ir_datasets {dataset_id!r} has no queries")
    queries = _QueryCollector(f"{IRDS_PREFIX}{dataset_id}")
    try:
        for query in dataset.queries_iter():
            text = query.default_text() if query_field == "query" else getattr(query, query_field, None)
            if not isinstance(text, str):
                raise UserError(f"ir_datasets {dataset_id!r} queries have no text field {query_field!r}")
            queries.add(None, str(query.query_id), text)
    except UserError:
        raise
    except Exception as error:  # downloads fail in many ways (DNS, HTTP, checksum); all mean "use local files"
        raise _irds_failure(dataset_id, "queries", error) from None
    return queries.result()


def _irds_qrels(dataset_id: str) -> dict[str, dict[str, int]]:
    dataset = _irds_dataset(dataset_id)
    if not dataset.has_qrels():
        raise UserError(f"ir_datasets {dataset_id!r} has no qrels")
    qrels: dict[str, dict[str, int]] = {}
    try:
        for qrel in dataset.qrels_iter():
            qrels.setdefault(str(qrel.query_id), {})[str(qrel.doc_id)] = int(qrel.relevance)
    except Exception as error:  # see _irds_topics
        raise _irds_failure(dataset_id, "qrels", error) from None
    return qrels

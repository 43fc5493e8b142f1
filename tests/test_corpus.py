"""Corpus readers: BEIR / JSONL / CSV / TSV / Parquet / text directories, skips and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from retriever.errors import BadInputError, CorpusError
from retriever.ingest.corpus import Document, Fields, ReadReport, read_corpus


def read(paths, fields=Fields(), skip_bad=False):
    report = ReadReport()
    docs = list(read_corpus([paths] if isinstance(paths, (str, Path)) else paths, fields, skip_bad, report))
    return docs, report


# --- JSONL ---------------------------------------------------------------------------------------


def test_jsonl_ids_titles_and_metadata(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"_id": "a", "title": "T", "text": "alpha", "metadata": {"k": 1}},
        {"id": 7, "text": "beta"},
        {"text": "gamma", "title": None},
    ])
    docs, report = read(path)
    assert docs == [
        Document(id="a", text="alpha", title="T", metadata={"k": 1}),
        Document(id="7", text="beta", title="", metadata={}),
        Document(id="c.jsonl:3", text="gamma", title="", metadata={}),
    ]
    assert (report.documents, report.skipped_empty, report.skipped_bad, report.skipped) == (3, 0, 0, 0)


def test_jsonl_custom_fields(tmp_path):
    path = write_jsonl(tmp_path / "c.ndjson", [
        {"key": "k1", "body": "first body", "heading": "H", "lang": "en", "year": 2020, "metadata": {"src": "x"}},
    ])
    (doc,), _ = read(path, Fields(id="key", text="body", title="heading", metadata=("lang", "year", "missing")))
    assert doc == Document(id="k1", text="first body", title="H", metadata={"src": "x", "lang": "en", "year": 2020})


def test_jsonl_explicit_id_field_missing_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"key": "k1", "text": "a"}, {"text": "b"}])
    with pytest.raises(CorpusError) as info:
        read(path, Fields(id="key"))
    assert f"{path}:2: no 'key' field (use --id-field)" in str(info.value)


def test_jsonl_bom_blank_lines_and_numbers(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"_id": "1", "text": "first"}\n\n   \n{"_id": "2", "text": 42}\n')
    docs, report = read(path)
    assert [(d.id, d.text) for d in docs] == [("1", "first"), ("2", "42")]
    assert report.skipped == 0


def test_jsonl_empty_and_whitespace_texts_are_skipped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"_id": "1", "text": "kept"},
        {"_id": "2", "text": ""},
        {"_id": "3", "text": "   \n\t "},
        {"_id": "4", "text": None},
        {"_id": "5", "text": "also kept"},
    ])
    docs, report = read(path)
    assert [d.id for d in docs] == ["1", "5"]
    assert (report.documents, report.skipped_empty, report.skipped_bad) == (2, 3, 0)


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2", "text": "ok"}\n{"_id": "3", "text": \n')
    with pytest.raises(CorpusError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: malformed JSON")
    assert "--skip-bad" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"_id": "x", "body": "no text field"}', "no 'text' field (fields: _id, body; use --text-field)"),
        ('["a", "list"]', "expected an object, got list"),
        ('"just a string"', "expected an object, got str"),
        ('{"_id": "x", "text": ["a", "b"]}', "text/title must be a string, got list"),
        ('{"_id": "x", "text": "ok", "title": {"a": 1}}', "text/title must be a string, got dict"),
        ("not json at all", "malformed JSON"),
    ],
)
def test_jsonl_bad_records(tmp_path, line, fragment):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "good", "text": "fine"}\n' + line + "\n")
    with pytest.raises(CorpusError) as info:
        read(path)
    assert f"{path}:2: {fragment}" in str(info.value)
    # With skip_bad the record is skipped, counted and remembered.
    docs, report = read(path, skip_bad=True)
    assert [d.id for d in docs] == ["good"]
    assert (report.documents, report.skipped_bad, report.skipped_empty) == (1, 1, 0)
    assert report.first_bad.startswith(f"{path}:2: ")


def test_skip_bad_counts_every_bad_record(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = []
    for i in range(10):
        lines.append(json.dumps({"_id": str(i), "text": f"doc {i}"}) if i % 3 else "{broken")
    lines.append(json.dumps({"_id": "empty", "text": " "}))
    path.write_text("\n".join(lines) + "\n")
    docs, report = read(path, skip_bad=True)
    assert len(docs) == 6
    assert (report.skipped_bad, report.skipped_empty, report.skipped) == (4, 1, 5)
    assert report.first_bad.startswith(f"{path}:1: malformed JSON")


def test_jsonl_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"_id": "1", "text": "fine"}\n' + '{"_id": "2", "text": "café"}\n'.encode("latin-1"))
    with pytest.raises(CorpusError) as info:
        read(path)
    assert f"{path}:2: not valid UTF-8" in str(info.value)
    docs, report = read(path, skip_bad=True)
    assert [d.id for d in docs] == ["1"] and report.skipped_bad == 1


def test_utf8_text_is_kept_exactly(tmp_path):
    text = "naïve café — 東京, emoji 🚀, and\ttabs\nnewlines"
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "u", "text": text}])
    (doc,), _ = read(path)
    assert doc.text == text


def test_beir_directory(tmp_path):
    beir = tmp_path / "beir"
    write_jsonl(beir / "corpus.jsonl", [{"_id": "d1", "title": "", "text": "one"}])
    write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "query"}])
    (beir / "notes.txt").write_text("must be ignored: the directory is BEIR")
    docs, _ = read(beir)
    assert [d.id for d in docs] == ["d1"]


def test_several_paths_in_order(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"_id": "a1", "text": "x"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"_id": "b1", "text": "y"}, {"_id": "b2", "text": "z"}])
    docs, report = read([a, b])
    assert [d.id for d in docs] == ["a1", "b1", "b2"] and report.documents == 3


# --- CSV / TSV -----------------------------------------------------------------------------------


def test_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text('id,title,text,lang\n1,T1,"hello, world",en\n2,T2,"multi\nline",fr\n3,T3,,de\n', encoding="utf-8")
    docs, report = read(csv_path, Fields(metadata=("lang",)))
    assert [(d.id, d.title, d.text, d.metadata) for d in docs] == [
        ("1", "T1", "hello, world", {"lang": "en"}),
        ("2", "T2", "multi\nline", {"lang": "fr"}),
    ]
    assert report.skipped_empty == 1
    tsv_path = tmp_path / "c.tsv"
    tsv_path.write_text("id\ttext\nx\tfirst, with comma\n", encoding="utf-8")
    (doc,), _ = read(tsv_path)
    assert (doc.id, doc.text) == ("x", "first, with comma")


def test_csv_missing_text_column(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,body\n1,hello\n")
    with pytest.raises(CorpusError) as info:
        read(path)
    assert f"{path}: no 'text' column (columns: id, body; use --text-field)" in str(info.value)


def test_csv_row_with_too_many_values(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,text\n1,ok\n2,too,many\n")
    with pytest.raises(CorpusError) as info:
        read(path)
    assert f"{path}:3: more values than columns" in str(info.value)
    docs, report = read(path, skip_bad=True)
    assert [d.id for d in docs] == ["1"] and report.skipped_bad == 1


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes("id,text\n1,café\n".encode("latin-1"))
    with pytest.raises(CorpusError) as info:
        read(path)
    assert f"{path}: not valid UTF-8" in str(info.value)


def test_empty_csv_has_no_documents(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("")
    docs, report = read(path)
    assert docs == [] and report.documents == 0


# --- Parquet -------------------------------------------------------------------------------------


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"_id": ["p1", "p2", "p3"], "text": ["first", None, "third"], "n": [1, 2, 3]}), path)
    docs, report = read(path, Fields(metadata=("n",)))
    assert [(d.id, d.text, d.metadata) for d in docs] == [("p1", "first", {"n": 1}), ("p3", "third", {"n": 3})]
    assert report.skipped_empty == 1


def test_parquet_missing_column_and_bad_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(CorpusError, match="no 'text' column"):
        read(path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    with pytest.raises(CorpusError, match="not a readable Parquet file"):
        read(broken)


# --- text directories ----------------------------------------------------------------------------


def test_text_directory_is_read_recursively(tmp_path):
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("\ufeffalpha text")
    (root / "sub" / "b.md").write_text("# beta\nmarkdown")
    (root / "sub" / "c.markdown").write_text("gamma")
    (root / "empty.txt").write_text("  \n")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "data.json").write_text('{"text": "json files in a text directory are ignored"}')
    docs, report = read(root)
    assert [(d.id, d.title, d.text, d.metadata) for d in docs] == [
        ("a.txt", "a", "alpha text", {"path": "a.txt"}),
        ("sub/b.md", "b", "# beta\nmarkdown", {"path": "sub/b.md"}),
        ("sub/c.markdown", "c", "gamma", {"path": "sub/c.markdown"}),
    ]
    assert report.skipped_empty == 1


def test_single_text_file(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("just one")
    (doc,), _ = read(path)
    assert (doc.id, doc.title, doc.text) == (path.as_posix(), "one", "just one")


def test_named_text_files_with_the_same_name_keep_their_paths(tmp_path):
    """Files named one by one are identified by the path given, so two README.md files don't collide."""
    for part in ("a", "b"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "README.md").write_text(f"readme of {part}")
    docs, _ = read([tmp_path / "a" / "README.md", tmp_path / "b" / "README.md"])
    assert [d.id for d in docs] == [(tmp_path / p / "README.md").as_posix() for p in ("a", "b")]


def test_text_file_not_utf8(tmp_path):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "good.txt").write_text("fine")
    (root / "bad.txt").write_bytes("caf\xe9".encode("latin-1") + b"\xff\xfe")
    with pytest.raises(CorpusError) as info:
        read(root)
    assert f"{root / 'bad.txt'}: not valid UTF-8" in str(info.value)
    docs, report = read(root, skip_bad=True)
    assert [d.id for d in docs] == ["good.txt"] and report.skipped_bad == 1


# --- paths ---------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(CorpusError) as info:
        read(missing)
    assert str(info.value) == f"{missing}: no such file or directory"
    assert issubclass(CorpusError, BadInputError)


def test_missing_path_is_reported_before_reading_anything(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": "x"}])
    gen = read_corpus([good, tmp_path / "missing.jsonl"])
    with pytest.raises(CorpusError, match="no such file"):
        next(gen)


@pytest.mark.parametrize("name", ["corpus.xml", "corpus", "corpus.docx"])
def test_unknown_format(tmp_path, name):
    path = tmp_path / name
    path.write_text("x")
    with pytest.raises(CorpusError, match="unknown corpus format"):
        read(path)


def test_empty_directory_has_no_documents(tmp_path):
    (tmp_path / "empty").mkdir()
    docs, report = read(tmp_path / "empty")
    assert docs == [] and report.documents == 0


# --- the shared reference data -------------------------------------------------------------------


def test_shared_financial_qa_corpus(shared_finqa):
    """6,757 records, one of them with an empty text (skipped and counted); no encoding."""
    docs, report = read(shared_finqa)  # a BEIR directory: reads corpus.jsonl
    assert report.documents + report.skipped_empty == 6757
    assert (report.documents, report.skipped_empty, report.skipped_bad) == (6756, 1, 0)
    assert len({d.id for d in docs}) == 6756
    assert all(d.text.strip() for d in docs)
    assert docs[0].metadata == {"ticker": "NVDA", "filing": "2023_10K"}
    qreport = ReadReport()
    queries = list(read_corpus([shared_finqa / "queries.jsonl"], report=qreport))
    # 7,000 query lines, two of them with an empty text.
    assert (len(queries), qreport.skipped_empty) == (6998, 2)
    assert queries[0].id == "q0"


# --- limits: nothing the engine cannot store or replay gets through ------------------------------


def _line(tmp_path, text: str, name: str = "c.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text + "\n", encoding="utf-8", errors="surrogatepass")
    return path


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"_id": "d", "text": "t", "metadata": ' + _nested(33) + "}", "metadata nests more than 32 levels deep"),
        ('{"_id": "d", "text": "t", "metadata": ' + _nested(100_000) + "}", "JSON nested too deeply to read"),
        ('{"_id": "d", "text": "t", "metadata": {"n": 1' + "0" * 5000 + "}}", "unreadable JSON"),
        ('{"_id": "d", "text": "t", "metadata": {"n": 9223372036854775808}}', "outside the signed 64-bit range"),
        ('{"_id": "d", "text": "t", "metadata": {"n": -9223372036854775809}}', "outside the signed 64-bit range"),
        ('{"_id": "d", "text": "t", "metadata": {"x": Infinity}}', "metadata cannot be stored"),
        ('{"_id": "d", "text": "t", "metadata": {"s": "' + "x" * 70_000 + '"}}', "(at most 65,536)"),
        ('{"_id": "' + "i" * 513 + '", "text": "t"}', "the document id is 513 characters long (at most 512)"),
        ('{"_id": "d", "title": "' + "t" * 4097 + '", "text": "t"}', "the title is 4,097 characters long"),
        ('{"_id": "d", "text": "bad \\ud800 text"}', "the text holds a lone surrogate (U+D800)"),
        ('{"_id": "\\udc00", "text": "t"}', "the document id holds a lone surrogate"),
        ('{"_id": "d", "text": "t", "metadata": {"\\ud83d": 1}}', "metadata holds a lone surrogate"),
        ('{"_id": {"a": 1}, "text": "t"}', "the document id must be a string or a number"),
    ],
)
def test_records_over_a_limit_are_bad_records(tmp_path, line, fragment):
    path = _line(tmp_path, line)
    with pytest.raises(CorpusError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}:1: ") and fragment in message, message
    assert "\n" not in message
    docs, report = read(path, skip_bad=True)
    assert docs == [] and report.skipped_bad == 1


def test_records_at_the_limits_are_kept(tmp_path):
    meta = _nested(31)  # the metadata object plus 31 levels: 32
    path = _line(tmp_path, '{"_id": "' + "i" * 512 + '", "text": "nul \\u0000 kept", "metadata": {"deep": ' + meta
                 + ', "big": 9223372036854775807, "small": -9223372036854775808}}')
    (doc,), _ = read(path)
    assert len(doc.id) == 512 and doc.text == "nul \x00 kept"
    assert doc.metadata["big"] == 2**63 - 1


def test_tsv_stray_quote_is_kept_verbatim_not_merged(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text('id\ttext\n1\ta "quoted start\n2\tsecond row\n3\tend quote" here\n', encoding="utf-8")
    docs, _ = read(path)
    assert [(d.id, d.text) for d in docs] == [("1", 'a "quoted start'), ("2", "second row"), ("3", 'end quote" here')]


def test_csv_unterminated_quote_is_a_bad_record_naming_its_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,text\n1,fine\n2,"never closed\n3,lost\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{path}:3: malformed CSV record \(unexpected end of data\)"):
        read(path)
    docs, report = read(path, skip_bad=True)
    assert [d.id for d in docs] == ["1"] and report.skipped_bad == 1


def test_csv_fewer_values_than_columns_is_a_bad_record(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,text,lang\n1,ok,en\n2,short\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{path}:3: fewer values than columns \(2 for 3\)"):
        read(path)


def test_csv_record_spanning_too_many_lines_is_a_bad_record(tmp_path):
    from retriever.store.limits import MAX_CSV_RECORD_LINES

    body = "\n".join(["line"] * (MAX_CSV_RECORD_LINES + 1))
    path = tmp_path / "c.csv"
    path.write_text(f'id,text\n1,"{body}"\n2,after\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"{path}:2: a quoted field spans lines 2-"):
        read(path)
    docs, _ = read(path, skip_bad=True)
    assert [d.id for d in docs] == ["2"]


def test_format_overrides_the_suffix(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text('{"_id": "j", "text": "json in a .txt file"}\n')
    (doc,), _ = read(path)
    assert doc.id == str(path)  # a text file by its suffix
    report = ReadReport()
    (doc,) = list(read_corpus([path], report=report, fmt="jsonl"))
    assert (doc.id, doc.text) == ("j", "json in a .txt file")
    with pytest.raises(CorpusError, match="unknown format 'xml'"):
        list(read_corpus([path], fmt="xml"))

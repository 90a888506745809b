"""Segment CSV parsing: the released format, its real quirks, and errors that name file and line."""

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from audiosetdl.metadata.segment_table import read_segment_table, read_segments
from audiosetdl.metadata.segments import SegmentFormatError, format_row, render_csv, subset_name

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:25 2017\n"
    "# num_ytids=2, num_segs=2, num_unique_labels=2, num_positive_labels=2\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def write(tmp_path: Path, rows: str, name: str = "eval_segments.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + rows)
    return path


def test_real_eval_csv_quirks(shared_audioset):
    parsed = read_segments(shared_audioset / "eval_segments.csv")
    assert parsed.subset == "eval"
    assert len(parsed.segments) == 20371
    assert sum(s.ytid.startswith("-") for s in parsed.segments) == 392
    assert sum(round(s.duration, 3) < 10 for s in parsed.segments) >= 361
    first = parsed.segments[0]
    assert (first.ytid, first.start, first.end) == ("--4gqARaEJE", 0.0, 10.0)
    assert first.labels == ("/m/068hy", "/m/07q6cd_", "/m/0bt9lr", "/m/0jbk")


@pytest.mark.parametrize("name", ["eval_segments.csv", "balanced_train_segments.csv"])
def test_real_csv_round_trips_byte_for_byte(shared_audioset, name):
    original = (shared_audioset / name).read_text()
    parsed = read_segments(shared_audioset / name)
    title = original.splitlines()[0][2:]
    assert render_csv(parsed.segments, title) == original


def test_subset_names():
    assert subset_name("x/eval_segments.csv") == "eval"
    assert subset_name("balanced_train_segments.csv") == "bal_train"
    assert subset_name("unbalanced_train_segments.csv") == "unbal_train"
    assert subset_name("/data/my_dogs.csv") == "my_dogs"
    assert subset_name("eval_segments.csv.03") == "eval_segments.csv"


@pytest.mark.parametrize(
    "row, problem",
    [
        ('short_id, 0.000, 10.000, "/m/09x0r"', "bad YouTube ID 'short_id'"),
        ('abc$efghijk, 0.000, 10.000, "/m/09x0r"', "bad YouTube ID"),
        ('--4gqARaEJE, 10.000, 10.000, "/m/09x0r"', "end 10.000 is not after start 10.000"),
        ('--4gqARaEJE, 20.000, 10.000, "/m/09x0r"', "is not after start"),
        ('--4gqARaEJE, -1.000, 10.000, "/m/09x0r"', "start '-1.000' is negative"),
        ('--4gqARaEJE, abc, 10.000, "/m/09x0r"', "start 'abc' is not a number"),
        ('--4gqARaEJE, 0.000, nan, "/m/09x0r"', "not a finite number"),
        ('--4gqARaEJE, 0.000, 10.000', "expected 4 fields"),
        ('--4gqARaEJE, 0.000, 10.000, ""', "no labels"),
        ('--4gqARaEJE, 0.000, 10.000, "dog"', "bad label 'dog'"),
        ('--4gqARaEJE, 0.000, 10.000, "/m/09x0r', "unterminated quote"),
        ('--4gqARaEJE, 0.000, 10.000, "/m/09x0r,/m/0', "unterminated quote"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, row, problem):
    path = write(tmp_path, '--BfvyPmVMo, 20.000, 30.000, "/m/03l9g"\n' + row + "\n")
    with pytest.raises(SegmentFormatError) as info:
        read_segments(path)
    assert info.value.lineno == 5
    assert f"{path}:5: " in str(info.value)
    assert problem in str(info.value)


def test_unknown_label_when_index_loaded(tmp_path):
    path = write(tmp_path, '--BfvyPmVMo, 20.000, 30.000, "/m/03l9g,/m/nothere"\n')
    with pytest.raises(SegmentFormatError, match=r":4: unknown label '/m/nothere'"):
        read_segments(path, known_mids={"/m/03l9g"})
    assert len(read_segments(path).segments) == 1  # without an index, any well-formed MID passes


def test_skip_bad_rows_counts_them(tmp_path):
    path = write(tmp_path, '--BfvyPmVMo, 20.000, 30.000, "/m/03l9g"\nbad\n-0123456789, 0, 5, "/m/09x0r"\n')
    parsed = read_segments(path, skip_bad_rows=True)
    assert [s.ytid for s in parsed.segments] == ["--BfvyPmVMo", "-0123456789"]
    assert [(b.lineno, b.problem.split(" (")[0]) for b in parsed.bad_rows] == [(5, "expected 4 fields")]


def test_truncated_last_line_is_a_bad_row(tmp_path):
    """A half-downloaded CSV ends inside its last row's quoted labels: named by FILE:LINE, or skipped and counted."""
    good = '--BfvyPmVMo, 20.000, 30.000, "/m/03l9g"\n-0123456789, 0.000, 5.000, "/m/09x0r"\n'
    path = write(tmp_path, good + 'abcdefghijk, 0.000, 10.000, "/m/09x0r,/m/03')  # cut mid-MID, no newline
    with pytest.raises(SegmentFormatError, match=rf"{path}:6: unterminated quote"):
        read_segment_table(path)
    table = read_segment_table(path, skip_bad_rows=True)
    assert [s.ytid for s in table.segments()] == ["--BfvyPmVMo", "-0123456789"]
    assert [(b.lineno, b.problem.split(":")[0]) for b in table.bad_rows] == [(6, "unterminated quote")]


def test_crlf_and_unspaced_rows_are_accepted(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_bytes(b'# a\r\n# b\r\n# c\r\nABCDEFGHIJK,1.5,11.5,"/m/09x0r,/t/dd00012"\r\n')
    (segment,) = read_segments(path).segments
    assert (segment.ytid, segment.start, segment.end, segment.labels, segment.subset) == (
        "ABCDEFGHIJK", 1.5, 11.5, ("/m/09x0r", "/t/dd00012"), "mine")
    assert format_row(segment) == 'ABCDEFGHIJK, 1.500, 11.500, "/m/09x0r,/t/dd00012"'


ID_CHARS = "abcXYZ019_-"
good_rows = st.builds(
    lambda ytid, start, length, labels: f'{ytid}, {start:.3f}, {start + length:.3f}, "{",".join(labels)}"',
    st.text(ID_CHARS, min_size=11, max_size=11),
    st.integers(0, 10_000).map(lambda x: x / 8),
    st.integers(1, 80).map(lambda x: x / 8),
    st.lists(st.sampled_from(["/m/09x0r", "/m/03l9g", "/t/dd00012"]), min_size=1, max_size=3),
)
bad_rows = st.sampled_from([
    'tooshort, 0.000, 10.000, "/m/09x0r"', 'abcdefghijk, 5.000, 1.000, "/m/09x0r"',
    'abcdefghijk, x, 1.000, "/m/09x0r"', 'abcdefghijk, 0.000, 1.000, ""', 'abcdefghijk, 0, 1, "/m/a",extra',
    'abcdefghijk, 0.000, 1.000, "/m/09x0r, /m/03l9g"', 'abcdefghijk, inf, 1.000, "/m/09x0r"',
])
# A good row cut short, as the last line of a half-downloaded CSV: the quote is never closed (or fields miss).
truncated_rows = st.builds(lambda row, cut: row[: max(1, len(row) - cut)], good_rows, st.integers(1, 40))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(good_rows.map(lambda r: (r, True)), good_rows.map(lambda r: (r, True)),
                          bad_rows.map(lambda r: (r, None)), truncated_rows.map(lambda r: (r, False))),
                min_size=1, max_size=30))
def test_fast_and_exact_parsers_agree(tmp_path_factory, tagged):
    """The columnar fast path must accept exactly what the row-by-row parser accepts; good rows (True) are
    accepted, truncated ones (False) refused; the odd ones (None, e.g. space-padded labels) as the exact parser says."""
    rows = [row for row, _ in tagged]
    path = write(tmp_path_factory.mktemp("csv"), "\n".join(rows) + "\n")
    table = read_segment_table(path, skip_bad_rows=True)
    exact_good = []
    for row, good in tagged:
        try:
            exact_good.append(read_segments(write(tmp_path_factory.mktemp("one"), row + "\n")).segments[0])
        except SegmentFormatError:
            assert good is not True, row
        else:
            assert good is not False, f"accepted a malformed row: {row!r}"
    assert [(s.ytid, s.start, s.end, s.labels) for s in table.segments()] == \
        [(s.ytid, s.start, s.end, s.labels) for s in exact_good]
    assert len(table.bad_rows) == len(rows) - len(exact_good)

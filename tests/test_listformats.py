"""List parsing: the real delivered formats, and malformed lists refused with file:line."""
from __future__ import annotations

import pytest

from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.listformats import ListFormatError, ListOptions, parse_list

PDQ, MD5 = HASH_TYPES["pdq"], HASH_TYPES["md5"]
HMA = "ThreatExchange/hasher-matcher-actioner/sample_data"
H1 = "acecf3355e3125c8e24e2f30e0d4ec4f8482b878b3c34cdbdf063278db275992"


def _write(tmp_path, name, content, mode="w"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return str(p)


def test_threatexchange_simple_export_csv_without_header(testdata):
    out = parse_list(str(testdata / HMA / "pdq.csv"), PDQ)
    assert out.fmt == "csv" and out.stats["entries"] + out.stats["duplicates"] == 139
    assert out.ids[0] == "2880742865368386" and out.lines[0] == 1


def test_hma_holidays_csv(testdata):
    for name, rows in (("holidays-jpg1-pdq-hashes.csv", 813), ("holidays-jpg2-pdq-hashes.csv", 679)):
        out = parse_list(str(testdata / HMA / name), PDQ)
        assert out.stats["entries"] + out.stats["duplicates"] == rows


def test_pdq_samples_csv_with_header_uses_signal_str(testdata):
    out = parse_list(str(testdata / "ThreatExchange/python-threatexchange/threatexchange/pdq_samples.csv"), PDQ)
    assert out.stats["entries"] + out.stats["duplicates"] == 138
    full = parse_list(str(testdata / HMA / "pdq.csv"), PDQ)
    assert set(bytes(out.codes[i:i + 32]) for i in range(0, len(out.codes), 32)) <= \
        set(bytes(full.codes[i:i + 32]) for i in range(0, len(full.codes), 32))


def test_md5_export_and_plain_needles(testdata):
    out = parse_list(str(testdata / HMA / "photo_md5.csv"), MD5)
    assert out.stats["entries"] == 1
    needles = parse_list(str(testdata / "ThreatExchange/pdq/data/reg-test-input/needles.txt"), PDQ)
    assert needles.fmt == "plain" and needles.stats["entries"] == 100


def test_typed_format_and_comments_blank_lines_bom_case(tmp_path):
    p = _write(tmp_path, "l.txt", ("\ufeff# header comment\n\npdq " + H1.upper() + "\r\n\npdq " + H1 + "\n"
                                   ).encode("utf-8"))
    out = parse_list(p, PDQ)
    assert out.fmt == "typed" and out.stats["entries"] == 1 and out.stats["duplicates"] == 1
    assert out.stats["skipped_blank_or_comment"] == 3


@pytest.mark.parametrize("content,line,needle", [
    (f"{H1}\n{H1[:-1]}x\n", 2, "non-hex"),
    (f"{H1}\n\n{H1[:-2]}\n", 3, "64 hex digits"),
    (f"pdq {H1}\nmd5 d41d8cd98f00b204e9800998ecf8427e\n", 2, "does not match list type"),
    (f"{H1},1\n{H1}\n,2\n", 3, "empty"),
    (b"\xff\xfe" + H1.encode("utf-16-le"), 1, "UTF-8"),
])
def test_malformed_lists_name_file_and_line(tmp_path, content, line, needle):
    p = _write(tmp_path, "bad.txt", content)
    with pytest.raises(ListFormatError) as err:
        parse_list(p, PDQ)
    assert str(err.value).startswith(f"{p}:{line}:"), str(err.value)
    assert needle in str(err.value)


def test_mixed_types_can_be_skipped_when_asked(tmp_path):
    p = _write(tmp_path, "mixed.txt", f"pdq {H1}\nmd5 d41d8cd98f00b204e9800998ecf8427e\n")
    out = parse_list(p, PDQ, ListOptions(other_types="skip"))
    assert out.stats["entries"] == 1 and out.stats["skipped_other_type"] == 1


def test_empty_list_is_an_error(tmp_path):
    p = _write(tmp_path, "empty.txt", "# nothing\n\n")
    with pytest.raises(ListFormatError, match="no pdq entries"):
        parse_list(p, PDQ)


def test_jsonl_and_named_hash_column(tmp_path):
    p = _write(tmp_path, "l.jsonl", f'{{"hash": "{H1}", "type": "pdq", "id": 7}}\n')
    out = parse_list(p, PDQ)
    assert out.fmt == "jsonl" and out.ids == ["7"]
    p = _write(tmp_path, "l.tsv", f"label\tdigest\nx\t{H1}\n")
    assert parse_list(p, PDQ, ListOptions(hash_column="digest")).stats["entries"] == 1


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ListFormatError, match="cannot open"):
        parse_list(str(tmp_path / "nope.txt"), PDQ)


def test_threatexchange_signal_types_are_recognised(tmp_path):
    """python-threatexchange typed files mix signal types: image hashes of the list's type are
    applied (photo_md5 is md5), other media (video_md5, url_md5, raw_text…) are skipped and counted."""
    md5 = "0123456789abcdef0123456789abcdef"
    p = tmp_path / "te.txt"
    p.write_text(f"video_md5 {md5[::-1]}\nphoto_md5 {md5}\nurl_md5 {md5[:31]}f\nraw_text hello\npdq {'0' * 64}\n")
    parsed = parse_list(str(p), HASH_TYPES["md5"], ListOptions(other_types="skip"))
    assert parsed.stats["entries"] == 1 and parsed.stats["skipped_other_signal"] == 3
    assert parsed.stats["skipped_other_type"] == 1  # a pdq entry: an image hash of another type
    with pytest.raises(ListFormatError, match=":5: entry type 'pdq' does not match"):
        parse_list(str(p), HASH_TYPES["md5"])  # other image types follow other_types (default error)
    urls = parse_list(str(p), HASH_TYPES["md5"], ListOptions(other_types="skip", url_hashes=True))
    assert urls.stats["entries"] == 1 and urls.code_array()[0].tobytes().hex() == md5[:31] + "f"

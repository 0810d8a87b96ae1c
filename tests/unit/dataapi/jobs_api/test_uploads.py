"""Uploads: types told by content, hostile archives and documents refused fast, names made safe.

Every file is generated here, in tmp_path. Zip bombs are built from one compressed MiB of zeros repeated, so a
"10 GB" archive costs 10 MB and no compression time.
"""

import gzip
import io
import struct
import tarfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import openpyxl
import pytest

import dataapi.jobs_api.uploads as uploads
from dataapi.jobs_api.uploads import (
    UploadError,
    UploadLimits,
    accept_upload,
    extract_zip,
    sniff,
    validate_csv,
    validate_json,
    validate_xlsx,
)

CSV = b"id,name\n1,Ana\n2,Jo\xc3\xa3o\n"
JSON = b'{"a": [1, 2.5, "x"], "b": null}'
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


# --- helpers ------------------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def make_zip(path: Path, *entries: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests need
        with zipfile.ZipFile(path, "w", method) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def make_xlsx(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "name"])
    ws.append([1, "Ana"])
    wb.save(path)
    return path


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """A copy of `src` with the parts in `replace` replaced, or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.pop(info.filename, None) or zin.read(info))
        for name, data in replace.items():
            zout.writestr(name, data)
    return dst


def deflated_zeros(mib: int) -> bytes:
    """A raw deflate stream of `mib` MiB of zeros: one compressed MiB (~1 KB) repeated after full flushes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * mib + c.flush()


def deflated_zip(path: Path, name: str, raw: bytes, declared_size: int) -> Path:
    """One Deflate entry holding `raw` and claiming `declared_size` (written stored, then relabelled)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, raw)
        info = zf.getinfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size = declared_size
    return path


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def refused(fn, *args, match: str | None = None) -> UploadError:
    with pytest.raises(UploadError, match=match) as info:
        fn(*args)
    return info.value


# --- type by content ----------------------------------------------------------------------------------------


def test_each_type_is_sniffed_by_content_not_name(tmp_path):
    assert sniff(write(tmp_path / "data.json", CSV)) == "csv"
    assert sniff(write(tmp_path / "data.csv", b"\xef\xbb\xbf \n" + JSON)) == "json"
    assert sniff(make_xlsx(tmp_path / "book.zip")) == "xlsx"
    assert sniff(make_zip(tmp_path / "inputs.csv", ("a.csv", CSV))) == "zip"
    assert sniff(write(tmp_path / "empty.zip", b"PK\x05\x06" + bytes(18))) == "zip"
    # a leading `[` that is not JSON but a bracketed CSV header
    assert sniff(write(tmp_path / "sql.csv", b"[id],[name]\n1,a\n")) == "csv"


def test_stored_name_follows_the_content(tmp_path):
    assert accept_upload(write(tmp_path / "u1", CSV), "data.json", tmp_path / "o1") == ["data.csv"]
    assert accept_upload(write(tmp_path / "u2", JSON), "data.csv", tmp_path / "o2") == ["data.json"]
    assert accept_upload(make_xlsx(tmp_path / "u3"), "report.zip", tmp_path / "o3") == ["report.xlsx"]
    assert (tmp_path / "o1" / "data.csv").read_bytes() == CSV
    assert (tmp_path / "u1").exists()  # the caller's file is copied, not moved


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (PNG, "PNG"),
        (b"%PDF-1.7\n1 0 obj\n", "PDF"),
        (gzip.compress(CSV), "gzip"),
        (b"7z\xbc\xaf\x27\x1c" + bytes(32), "7z"),
        (b"Rar!\x1a\x07\x01\x00" + bytes(32), "RAR"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(32), "XLS"),
        (b"abc\x00def\n", "binary"),
        (b"nome,cidade\nJos\xe9,S\xe3o Paulo\n", "not encoded as UTF-8"),  # latin-1
        ("a,b\n1,2\n".encode("utf-16"), "UTF-16"),
        (b"", "empty"),
        (b"PK\x03\x04 this is no zip", "Not a valid ZIP"),
    ],
)
def test_other_content_is_refused(tmp_path, data, match):
    refused(sniff, write(tmp_path / "upload.csv", data), match=match)


def test_a_png_named_csv_is_refused_and_nothing_stored(tmp_path):
    refused(accept_upload, write(tmp_path / "u", PNG), "photo.csv", tmp_path / "out", match="PNG")
    assert tree(tmp_path / "out") == []


def test_a_tar_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.csv")
        info.size = len(CSV)
        tar.addfile(info, io.BytesIO(CSV))
    refused(sniff, write(tmp_path / "u.csv", buf.getvalue()), match="tar")


# --- ZIP: paths, special files, duplicates ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.csv",
        "/etc/x.csv",
        "a/../../x.csv",
        "C:\\x.csv",
        "C:/x.csv",
        "dir\\x.csv",
        "./a.csv",
        "a//b.csv",
        "a/./b.csv",
        "bell\x07.csv",
    ],
)
def test_zip_slip_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "in.zip", ("ok.csv", CSV), (zipfile.ZipInfo(name), CSV))
    refused(extract_zip, archive, tmp_path / "out", match="Unsafe path")
    assert tree(tmp_path / "out") == []
    assert not (tmp_path / "evil.csv").exists()
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("mode", "match"), [(0o120777, "Symbolic links"), (0o010644, "Special files"), (0o060644, "Special files")]
)
def test_links_and_special_files_are_refused(tmp_path, mode, match):
    info = zipfile.ZipInfo("link.csv")
    info.create_system = 3
    info.external_attr = mode << 16
    archive = make_zip(tmp_path / "in.zip", (info, b"/etc/passwd"))
    refused(extract_zip, archive, tmp_path / "out", match=match)
    assert tree(tmp_path / "out") == []


@pytest.mark.parametrize(
    "names",
    [
        ("a.csv", "a.csv"),
        ("Data.csv", "data.CSV"),
        ("caf\u00e9.csv", "cafe\u0301.csv"),  # the same name, NFC and NFD
        ("d/a.csv", "D/A.csv"),
        ("x.csv", "x.csv/y.csv"),  # a file, then a folder of the same name
        ("x.csv/y.csv", "X.CSV"),  # and the other way round
    ],
)
def test_duplicate_names_are_refused(tmp_path, names):
    archive = make_zip(tmp_path / "in.zip", *((n, CSV) for n in names))
    refused(extract_zip, archive, tmp_path / "out", match="Duplicate")
    assert tree(tmp_path / "out") == []


def test_too_many_entries(tmp_path):
    archive = make_zip(tmp_path / "in.zip", *((f"f{i}.csv", CSV) for i in range(11)))
    refused(extract_zip, archive, tmp_path / "out", UploadLimits(max_entries=10), match="Too many entries")
    many = make_zip(tmp_path / "many.zip", *((f"d{i}/", b"") for i in range(1001)))
    refused(sniff, many, match="Too many entries")  # refused before zipfile builds 1001 entries


def test_the_zip64_end_record_is_read_too(tmp_path):
    data = make_zip(tmp_path / "in.zip", ("a.csv", CSV)).read_bytes()
    at = data.rfind(b"PK\x05\x06")
    size, offset = struct.unpack_from("<LL", data, at + 12)
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 5000, 5000, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    archive = write(tmp_path / "z64.zip", data[:at] + record + locator + data[at:])
    refused(extract_zip, archive, tmp_path / "out", match="Too many entries")


def test_encrypted_entries_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
        zf.writestr("a.csv", CSV)
        zf.getinfo("a.csv").flag_bits |= 0x1  # the central directory is written on close
    refused(extract_zip, tmp_path / "in.zip", tmp_path / "out", match="Encrypted")


def test_other_compression_methods_are_refused(tmp_path):
    archive = make_zip(tmp_path / "in.zip", ("a.csv", CSV), method=zipfile.ZIP_BZIP2)
    refused(extract_zip, archive, tmp_path / "out", match="compression method")


def test_overlapping_entries_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
        zf.writestr("a.csv", CSV)
        zf.writestr("b.csv", CSV)
        zf.getinfo("b.csv").header_offset = zf.getinfo("a.csv").header_offset
    refused(extract_zip, tmp_path / "in.zip", tmp_path / "out", match="Overlapping")


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([("inner.zip", b"PK")], "Nested archives"),
        ([("data.csv.gz", gzip.compress(CSV))], "Nested archives"),
        ([("data.csv", gzip.compress(CSV))], "data.csv: Nested archives are not allowed \\(gzip"),
        ([("data.csv", b"")], "data.csv: The file is empty"),
        ([("readme.md", b"# hi")], "Only .csv, .json and .xlsx"),
        ([("a.json", CSV)], "a.json: The content is CSV, but the name says JSON"),
        ([("a.csv", b"x,y\n" + b"\x00")], "a.csv: .*binary"),
        ([("a.json", b'{"a": NaN}')], "a.json: Invalid JSON"),
    ],
)
def test_zip_content_rules(tmp_path, entries, match):
    archive = make_zip(tmp_path / "in.zip", ("ok.csv", CSV), *entries)
    refused(extract_zip, archive, tmp_path / "out", match=match)
    assert not (tmp_path / "out").exists()  # created by the call, so removed with everything in it


def test_a_zip_without_files_is_refused(tmp_path):
    archive = make_zip(tmp_path / "in.zip", ("empty/", b""), ("__MACOSX/._x.csv", b"\x00"))
    refused(accept_upload, archive, "in.zip", tmp_path / "out", match="contains no files")
    refused(accept_upload, write(tmp_path / "e.zip", b"PK\x05\x06" + bytes(18)), "e.zip", tmp_path / "out")


def test_a_zip_inside_a_zip_is_refused_by_content(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", ("a.csv", CSV)).read_bytes()
    for name in ("inner.csv", "inner.xlsx"):
        archive = make_zip(tmp_path / "in.zip", (name, inner))
        refused(extract_zip, archive, tmp_path / "out", match=f"{name}: Nested archives .*ZIP")


def test_a_valid_zip_is_extracted(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx").read_bytes()
    archive = make_zip(
        tmp_path / "in.zip",
        ("data/", b""),
        ("data/sub/b.json", JSON),
        ("a.csv", CSV),
        ("data/Book.XLSX", book),
        ("__MACOSX/._a.csv", b"\x00\x05\x16\x07 AppleDouble"),
        ("data/.DS_Store", b"\x00\x00\x00\x01Bud1"),
    )
    dest = tmp_path / "out"
    dest.mkdir()
    names = accept_upload(archive, "inputs.zip", dest)
    assert names == ["data/sub/b.json", "a.csv", "data/Book.XLSX"]
    assert tree(dest) == ["a.csv", "data", "data/Book.XLSX", "data/sub", "data/sub/b.json"]
    assert (dest / "data/sub/b.json").read_bytes() == JSON


def test_a_failure_removes_only_what_the_call_wrote(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("not ours")
    archive = make_zip(tmp_path / "in.zip", ("d/a.csv", CSV), ("d/e/b.json", JSON), ("d/z.csv", b"\x00"))
    refused(extract_zip, archive, dest, match="d/z.csv")
    assert tree(dest) == ["keep.txt"]


# --- ZIP: bombs ---------------------------------------------------------------------------------------------


class CountingWrites:
    """Patches uploads.open so that the bytes written to extracted files are counted."""

    def __init__(self, monkeypatch):
        self.written = 0
        monkeypatch.setattr(uploads, "open", self.open, raising=False)

    def open(self, file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        return Counted(f, self) if mode == "xb" else f


class Counted:
    def __init__(self, f, counter: CountingWrites):
        self.f, self.counter = f, counter

    def write(self, data: bytes) -> int:
        self.counter.written += len(data)
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_200_mb_bomb_fails_fast_writing_little(tmp_path, monkeypatch):
    archive = deflated_zip(tmp_path / "bomb.zip", "zeros.csv", deflated_zeros(200), 200 << 20)
    assert archive.stat().st_size < 300_000
    writes = CountingWrites(monkeypatch)
    started = time.perf_counter()
    refused(extract_zip, archive, tmp_path / "out", match="zip bomb")
    assert time.perf_counter() - started < 2
    assert writes.written < 3 << 20
    assert not (tmp_path / "out").exists()


def test_a_10_gb_bomb_whose_header_says_so_is_refused_before_reading(tmp_path):
    archive = deflated_zip(tmp_path / "bomb.zip", "zeros.csv", deflated_zeros(10 << 10), 10 << 30)
    started = time.perf_counter()
    refused(accept_upload, archive, "bomb.zip", tmp_path / "out", match="larger than 512 MiB")
    assert time.perf_counter() - started < 2


def test_a_10_gb_bomb_whose_header_lies_is_caught_while_decompressing(tmp_path, monkeypatch):
    # The header claims 400 MiB from 10 MB (40:1, plausible); the data really is 10 GiB of zeros (1000:1).
    archive = deflated_zip(tmp_path / "bomb.zip", "zeros.csv", deflated_zeros(10 << 10), 400 << 20)
    writes = CountingWrites(monkeypatch)
    started = time.perf_counter()
    refused(extract_zip, archive, tmp_path / "out", match="zip bomb")
    assert time.perf_counter() - started < 2
    assert writes.written < 3 << 20


def test_a_header_claiming_less_than_the_data_is_refused(tmp_path):
    archive = deflated_zip(tmp_path / "bomb.zip", "zeros.csv", deflated_zeros(10 << 10), 1000)
    started = time.perf_counter()
    refused(extract_zip, archive, tmp_path / "out", match="Corrupt archive entry")
    assert time.perf_counter() - started < 2


def test_many_small_entries_are_capped_by_the_overall_ratio(tmp_path):
    # Each entry (just under 1 MiB, ~1000:1) is within the per-entry grace; together they pass 100:1 of the archive.
    body = b"a\n" + (b"x" * 99_999 + b"\n") * 10
    archive = make_zip(tmp_path / "in.zip", *((f"f{i}.csv", body) for i in range(30)))
    refused(extract_zip, archive, tmp_path / "out", match="The archive is compressed more than 100 to 1")
    assert not (tmp_path / "out").exists()
    assert len(extract_zip(archive, tmp_path / "out", UploadLimits(max_ratio=2000))) == 30


def test_total_and_file_caps(tmp_path):
    body = b"a,b\n" + bytes(range(48, 58)) * 1000 + b"\n"
    archive = make_zip(tmp_path / "in.zip", *((f"f{i}.csv", body) for i in range(5)), method=zipfile.ZIP_STORED)
    limits = UploadLimits(max_total_bytes=3 * len(body))
    refused(extract_zip, archive, tmp_path / "out", limits, match="expands to more than")
    refused(extract_zip, archive, tmp_path / "out2", UploadLimits(max_file_bytes=1000), match="larger than")


# --- XLSX ---------------------------------------------------------------------------------------------------

LAUGHS = (
    b'<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(2, 10)).replace(
        b"&lol1;", b"&lol;"
    )
    + b"]>"
)


def with_doctype(xml: bytes, doctype: bytes, text: bytes) -> bytes:
    """`xml` with `doctype` after its declaration and `text` (an entity reference) inside its root element."""
    decl, sep, rest = xml.partition(b"?>")
    head = decl + sep if sep else b""
    rest = rest if sep else xml
    root_end = rest.index(b">") + 1
    return head + doctype + rest[:root_end] + text + rest[root_end:]


def test_a_valid_xlsx_is_accepted(tmp_path):
    book = make_xlsx(tmp_path / "upload")
    validate_xlsx(book)
    assert accept_upload(book, "C:\\Users\\me\\Vendas 2024.xlsx", tmp_path / "out") == ["Vendas 2024.xlsx"]


def test_billion_laughs_in_a_workbook_is_refused_quickly(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx")
    with zipfile.ZipFile(book) as zf:
        workbook = zf.read("xl/workbook.xml")
    bad = rewrite_zip(book, tmp_path / "bad.xlsx", {"xl/workbook.xml": with_doctype(workbook, LAUGHS, b"&lol9;")})
    assert sniff(bad) == "xlsx"
    started = time.perf_counter()
    refused(validate_xlsx, bad, match="xl/workbook.xml' declares a DTD")
    assert time.perf_counter() - started < 1
    archive = make_zip(tmp_path / "in.zip", ("bad.xlsx", bad.read_bytes()))
    refused(extract_zip, archive, tmp_path / "out", match="bad.xlsx: XLSX part")


def test_external_entities_are_refused(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx")
    with zipfile.ZipFile(book) as zf:
        sheet = zf.read("xl/worksheets/sheet1.xml")
    xxe = b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    bad = rewrite_zip(book, tmp_path / "bad.xlsx", {"xl/worksheets/sheet1.xml": with_doctype(sheet, xxe, b"&xxe;")})
    error = refused(accept_upload, bad, "bad.xlsx", tmp_path / "out", match="sheet1.xml' declares a DTD")
    assert "root:" not in str(error)
    assert tree(tmp_path / "out") == []


def test_broken_workbooks_are_refused(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx")
    broken = rewrite_zip(book, tmp_path / "broken.xlsx", {"xl/workbook.xml": b"<workbook><sheets>"})
    refused(validate_xlsx, broken, match="not well-formed")
    fake = make_zip(tmp_path / "fake.xlsx", ("[Content_Types].xml", b"<Types/>"), ("xl/workbook.xml", b"<x/>"))
    assert sniff(fake) == "xlsx"
    refused(validate_xlsx, fake, match="Not a valid XLSX workbook")
    refused(validate_xlsx, make_zip(tmp_path / "plain.zip", ("a.csv", CSV)), match="Not an XLSX")


def test_workbooks_inside_a_zip_count_against_its_total(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx")
    with zipfile.ZipFile(book) as zf:
        parts = sum(info.file_size for info in zf.infolist())
    limits = UploadLimits(max_total_bytes=max(parts, book.stat().st_size) + 100)
    validate_xlsx(book, limits)
    archive = make_zip(tmp_path / "in.zip", ("book.xlsx", book.read_bytes()))
    refused(extract_zip, archive, tmp_path / "out", limits, match="book.xlsx: The upload expands to more than")


def test_macro_enabled_and_other_office_files_are_refused(tmp_path):
    book = make_xlsx(tmp_path / "book.xlsx")
    xlsm = rewrite_zip(book, tmp_path / "book.xlsm", {"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0 macros"})
    refused(accept_upload, xlsm, "book.xlsm", tmp_path / "out", match="Macro-enabled")
    docx = make_zip(tmp_path / "doc.docx", ("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w/>"))
    refused(sniff, docx, match="Office document other than XLSX")


# --- JSON ---------------------------------------------------------------------------------------------------


def test_deep_json_is_refused_fast(tmp_path):
    deep = write(tmp_path / "deep.json", b"[" * 100_000 + b"]" * 100_000)
    started = time.perf_counter()
    refused(validate_json, deep, match="Invalid JSON")
    refused(accept_upload, deep, "deep.json", tmp_path / "out", match="Invalid JSON")
    assert time.perf_counter() - started < 1


def test_the_depth_limit(tmp_path):
    validate_json(write(tmp_path / "ok.json", b"[" * 64 + b"]" * 64))
    refused(validate_json, write(tmp_path / "arrays.json", b"[" * 65 + b"]" * 65), match="more than 64 levels")
    nested = b'{"a":' * 65 + b"1" + b"}" * 65
    refused(validate_json, write(tmp_path / "objects.json", nested), match="more than 64 levels")
    validate_json(write(tmp_path / "three.json", b'[{"a": [1]}]'), UploadLimits(max_json_depth=3))
    refused(validate_json, tmp_path / "three.json", UploadLimits(max_json_depth=2), match="more than 2")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"[1, NaN]", "Invalid JSON"),
        (b'{"a": Infinity}', "Invalid JSON"),
        (b"[1, 2,]", "Invalid JSON"),
        (b'{"a": 1} x', "Invalid JSON"),
        (b'["caf\xe9"]', "Invalid JSON"),
        (b"42", "object or an array"),
    ],
)
def test_invalid_json_is_refused(tmp_path, data, match):
    refused(validate_json, write(tmp_path / "bad.json", data), match=match)


def test_valid_json_is_accepted(tmp_path):
    validate_json(write(tmp_path / "a.json", b"\xef\xbb\xbf" + JSON))
    assert accept_upload(write(tmp_path / "u", b"[]"), "list.json", tmp_path / "out") == ["list.json"]
    # a file that starts like JSON is judged as JSON
    refused(accept_upload, write(tmp_path / "v", b'{"a": 1,'), "data.json", tmp_path / "out", match="Invalid JSON")


# --- CSV ----------------------------------------------------------------------------------------------------


def test_valid_csv_is_accepted(tmp_path):
    validate_csv(write(tmp_path / "a.csv", b"\xef\xbb\xbf" + CSV))
    validate_csv(write(tmp_path / "b.csv", b'\n\nnome;valor\n"S\xc3\xa3o Paulo; SP";"1,5"\n'))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"a,b\n1,\x002\n", "line 2 contains NUL"),
        (b"a,b\n" + b"1,2\n" * 20_000 + b"Jos\xe9,1\n", "UTF-8 .*near line"),  # beyond the sniffed head
        (b"\n\n \n", "no header row"),
        (b"a,b\n" + b"x" * (4 << 20) + b"\n", "longer than"),
        (b'a,b\n"' + b"x" * 200_000 + b'"\n', "field larger than field limit"),
        ("a,b\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_invalid_csv_is_refused(tmp_path, data, match):
    refused(validate_csv, write(tmp_path / "bad.csv", data), match=match)


def test_a_50_mb_csv_is_checked_in_bounded_time(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.write(b"id,name,value\n")
        f.write(b"1234567,some name here,3.14159265\n" * 1_500_000)
    assert path.stat().st_size > 50_000_000
    started = time.perf_counter()
    assert accept_upload(path, "big.csv", tmp_path / "out") == ["big.csv"]
    assert time.perf_counter() - started < 10


# --- names and messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "stored"),
    [
        ("../../etc/passwd.csv", "passwd.csv"),
        ("..\\..\\boot.ini.csv", "boot.ini.csv"),
        ("", "input.csv"),
        ("...", "input.csv"),
        (".hidden", "hidden.csv"),
        ("a<b>|c\x00d.CSV", "a_b_c_d.csv"),
        ("relatório de vendas.txt", "relatório de vendas.csv"),
        ("sales.2024", "sales.2024.csv"),
    ],
)
def test_names_are_sanitised(tmp_path, original, stored):
    assert accept_upload(write(tmp_path / "u", CSV), original, tmp_path / "out") == [stored]
    assert (tmp_path / "out" / stored).read_bytes() == CSV


def test_long_names_are_cut(tmp_path):
    [name] = accept_upload(write(tmp_path / "u", CSV), "é" * 300 + ".csv", tmp_path / "out")
    assert name.endswith("é.csv") and len(name.encode()) <= 255


def test_messages_never_name_a_server_path(tmp_path):
    cases = [
        (sniff, write(tmp_path / "p.csv", PNG)),
        (validate_csv, write(tmp_path / "n.csv", b"a\x00")),
        (validate_json, write(tmp_path / "j.json", b"[1,")),
        (validate_xlsx, make_zip(tmp_path / "z.xlsx", ("a.csv", CSV))),
        (extract_zip, make_zip(tmp_path / "s.zip", ("../x.csv", CSV)), tmp_path / "o"),
    ]
    for fn, *args in cases:
        error = refused(fn, *args)
        assert str(tmp_path) not in str(error) and "/tmp" not in str(error)

"""Job inputs as uploaded: their type told by content, their safety checked, and their storage.

An upload is a ZIP holding all of a job's input files, or a single CSV, JSON or XLSX file. Everything here
treats it as hostile: a type is decided by the bytes, never by the name; archives are read entry by entry with
every cap (entries, sizes, compression ratio) measured on the bytes actually decompressed, never on what the
headers claim; XML inside workbooks is parsed with DTDs and entities refused. A ZIP may hold folders and
.csv, .json and .xlsx files only, each of which must match its extension; macOS and Windows debris
(``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) is skipped. Every refusal is an
``UploadError`` whose message is safe to show to the caller.

One module past the usual size on purpose: the checks of one hostile input (sniffing, ZIP directory and entry
caps, ratio metering, workbook parts, extraction) share their limits and meters, and read best side by side.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import shutil
import stat
import struct
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path, PurePosixPath

import openpyxl
import orjson
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, ParseError


class UploadError(ValueError):
    """The upload is refused (400). The message names entries as the caller sent them, never a server path."""


@dataclass(frozen=True)
class UploadLimits:
    max_entries: int = 1000  # entries (files and folders) in a ZIP, parts in an XLSX
    max_total_bytes: int = 1 << 30  # everything one upload expands to, workbooks inside a ZIP included
    max_file_bytes: int = 512 << 20  # one uploaded file, one ZIP entry or one XLSX part, uncompressed
    max_ratio: float = 100.0  # uncompressed / compressed, per entry and per archive, measured while reading
    max_json_depth: int = 64
    max_name_length: int = 255  # characters of a ZIP entry's path; UTF-8 bytes of a stored file name
    ratio_grace_bytes: int = 1 << 20  # ratios are judged past this output only: small repetitive files are fine


DEFAULT_LIMITS = UploadLimits()

_CHUNK = 16 << 10  # small reads keep what a bomb writes before its ratio shows small too
_HEAD = 64 << 10
_MAX_CSV_LINE = 4 << 20  # characters; DuckDB's own default is 2 MB
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
_XLSX_PARTS = ("[Content_Types].xml", "xl/workbook.xml")
_MACROS = "xl/vbaProject.bin"
_SUFFIX_KINDS = {".csv": "csv", ".json": "json", ".xlsx": "xlsx"}
_ARCHIVE_SUFFIXES = frozenset({".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".zst"})
_JUNK_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_ENCRYPTED = 0x01 | 0x40  # traditional and strong encryption flag bits
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\\:]")  # controls, Windows separators, drive letters and streams
_NAME_ODD = re.compile(r"[^\w.\- ]+")
# SQL Server and friends export CSV headers like `[id],[name]`: a leading `[` that is not JSON may still be CSV.
_BRACKETED_HEADER = re.compile(rb"\[[^\[\]{}\"\r\n]*\][ \t]*[,;\t|]")
_UTF16 = "Text files must be UTF-8 encoded, not UTF-16"
_WANTED = "upload a ZIP, CSV, JSON or XLSX file"

# Named in refusals; any other binary content fails the UTF-8 / NUL test. The flag marks archives.
_SIGNATURES = (
    (b"\x1f\x8b", "gzip archive", True),
    (b"\xfd7zXZ\x00", "xz archive", True),
    (b"7z\xbc\xaf\x27\x1c", "7z archive", True),
    (b"Rar!\x1a\x07", "RAR archive", True),
    (b"\x28\xb5\x2f\xfd", "zstd archive", True),
    (b"%PDF-", "PDF document", False),
    (b"\x89PNG\r\n\x1a\n", "PNG image", False),
    (b"\xff\xd8\xff", "JPEG image", False),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office file (XLS) or password-protected workbook", False),
)


def _signature(head: bytes) -> tuple[str, bool] | None:
    for magic, name, archive in _SIGNATURES:
        if head.startswith(magic):
            return name, archive
    if head[257:262] == b"ustar":
        return "tar archive", True
    if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
        return "bzip2 archive", True
    return None


def _show(name: str) -> str:
    """A caller-sent name, quoted and cut short, with control characters escaped."""
    return repr(name if len(name) <= 120 else name[:120] + "...")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def _check_file_size(path: Path, limits: UploadLimits) -> None:
    if path.stat().st_size > limits.max_file_bytes:
        raise UploadError(f"The file is larger than {_size(limits.max_file_bytes)}")


# --- type ---------------------------------------------------------------------------------------------------


def sniff(path: Path, limits: UploadLimits = DEFAULT_LIMITS) -> str:
    """The upload's type by content: "zip", "xlsx", "json" or "csv"; anything else raises UploadError.

    JSON is told from CSV by parsing it, so "json" means the file passed ``validate_json``. A file starting with
    ``{`` or ``[`` is JSON and refused if invalid, except a ``[id],[name]`` style CSV header. "csv" only means
    the first 64 KiB are NUL-free UTF-8 text: ``validate_csv`` reads the rest.
    """
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if not head:
        raise UploadError("The file is empty")
    if head.startswith(_ZIP_MAGIC):
        with _open_zip(path, limits) as z:
            names = set(z.zf.namelist())
        if set(_XLSX_PARTS) <= names:
            return "xlsx"
        if _XLSX_PARTS[0] in names:
            raise UploadError(f"Unsupported file type (an Office document other than XLSX): {_WANTED}")
        return "zip"
    if found := _signature(head):
        raise UploadError(f"Unsupported file type ({found[0]}): {_WANTED}")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UploadError(_UTF16)
    text = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    if text[:1] in (b"{", b"["):
        try:
            validate_json(path, limits)
            return "json"
        except UploadError:
            if not _BRACKETED_HEADER.match(text):
                raise
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _HEAD)
    except UnicodeDecodeError:
        raise UploadError(f"Unsupported file type (binary, or text not encoded as UTF-8): {_WANTED}") from None
    if b"\x00" in head:
        raise UploadError(f"Unsupported file type (binary data): {_WANTED}")
    return "csv"


# --- JSON and CSV -------------------------------------------------------------------------------------------


def validate_json(path: Path, limits: UploadLimits = DEFAULT_LIMITS) -> None:
    """UTF-8 JSON (BOM allowed) whose top level is an object or an array, at most ``max_json_depth`` deep.

    NaN and Infinity are refused: they are not JSON (RFC 8259) and few readers accept them. orjson parses without
    recursing past 1024 levels, so a very deep ``[[[[`` fails at once, never overflowing a stack; the depth limit
    is then checked level by level, without recursion either. Memory is bounded by ``max_file_bytes`` and the
    parsed values.
    """
    _check_file_size(path, limits)
    data = memoryview(path.read_bytes())
    if data[:3] == codecs.BOM_UTF8:
        data = data[3:]
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise UploadError(f"Invalid JSON: {e}") from None
    if not isinstance(value, dict | list):
        raise UploadError("JSON input must be an object or an array")
    level: list = [value]
    for _ in range(limits.max_json_depth):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return
    raise UploadError(f"JSON is nested more than {limits.max_json_depth} levels deep")


def validate_csv(path: Path, limits: UploadLimits = DEFAULT_LIMITS) -> None:
    """UTF-8 text (BOM allowed), no NUL, that the csv module reads, with a header row (its first non-blank row).

    Read line by line, so memory is bounded by the longest line (4 Mi characters) and time is linear. The
    delimiter is not guessed: the csv module's lenient reading only refuses what no CSV reader would take.
    """
    _check_file_size(path, limits)
    with open(path, "rb") as raw:
        if raw.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise UploadError(_UTF16)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(_csv_lines(f))
        try:
            if not any(any(field.strip() for field in row) for row in reader):
                raise UploadError("The CSV file has no header row")
            for _ in reader:
                pass
        except UnicodeDecodeError:
            raise UploadError(f"CSV must be UTF-8 encoded (invalid bytes near line {reader.line_num + 1})") from None
        except csv.Error as e:
            raise UploadError(f"Invalid CSV at line {reader.line_num}: {e}") from None


def _csv_lines(f: io.TextIOWrapper) -> Iterator[str]:
    number = 0
    while line := f.readline(_MAX_CSV_LINE + 1):
        number += 1
        if len(line) > _MAX_CSV_LINE:
            raise UploadError(f"CSV line {number} is longer than {_MAX_CSV_LINE} characters")
        if "\x00" in line:
            raise UploadError(f"CSV line {number} contains NUL bytes (binary data?)")
        yield line


# --- ZIP reading --------------------------------------------------------------------------------------------


class _CountingFile(io.FileIO):
    """A file counting the bytes read from it: what a ZIP entry's decompression really consumed."""

    consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


@dataclass
class _Zip:
    zf: zipfile.ZipFile
    raw: _CountingFile
    size: int  # of the archive file: the denominator of its overall ratio


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # its ZIP64 version, just before a 20-byte locator
_MAX_ENTRY_EXTRA = 1024  # extra field and comment bytes allowed per central directory entry


def _check_directory(raw: _CountingFile, size: int, limits: UploadLimits) -> None:
    """Refuse too many entries before zipfile parses the central directory, which costs memory per entry."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    raw.seek(size - tail_size)
    tail = raw.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise UploadError("Not a valid ZIP archive")
    entries, directory_size = _EOCD.unpack_from(tail, at)[4:6]
    at64 = at - 20 - _EOCD64.size
    if at64 >= 0 and tail[at64 : at64 + 4] == b"PK\x06\x06":
        entries, directory_size = _EOCD64.unpack_from(tail, at64)[7:9]
    per_entry = 46 + 4 * limits.max_name_length + _MAX_ENTRY_EXTRA
    if entries > limits.max_entries or directory_size > limits.max_entries * per_entry:
        raise UploadError(f"Too many entries in the archive (at most {limits.max_entries})")


@contextmanager
def _open_zip(path: Path, limits: UploadLimits) -> Iterator[_Zip]:
    with _CountingFile(path) as raw:
        size = os.fstat(raw.fileno()).st_size
        _check_directory(raw, size, limits)
        try:
            zf = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError, struct.error,
                NotImplementedError):  # e.g. a directory asking for a newer ZIP version
            raise UploadError("Not a valid ZIP archive") from None
        with zf:
            yield _Zip(zf, raw, size)


def _check_entries(z: _Zip, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """Checks on the central directory. Sizes it declares may refuse an archive, never admit one."""
    infos = z.zf.infolist()
    if len(infos) > limits.max_entries:
        raise UploadError(f"Too many entries in the archive (at most {limits.max_entries})")
    declared = 0
    for info in infos:
        shown = _show(info.orig_filename)
        if info.flag_bits & _ENCRYPTED:
            raise UploadError(f"Encrypted archive entries are not supported: {shown}")
        if info.flag_bits & 0x20:  # "compressed patched data": zipfile cannot read it
            raise UploadError(f"Unsupported archive entry {shown}")
        if not 0 <= info.header_offset <= z.size - 30:  # an entry said to start outside the file
            raise UploadError("Not a valid ZIP archive")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UploadError(f"Unsupported compression method (use Deflate) for archive entry {shown}")
        if info.file_size > limits.max_file_bytes:
            raise UploadError(f"Archive entry {shown} is larger than {_size(limits.max_file_bytes)}")
        declared += info.file_size
    if declared > limits.max_total_bytes:
        raise UploadError(f"The archive expands to more than {_size(limits.max_total_bytes)}")
    # Entries sharing compressed data (overlapping "better zip bombs") would each be read in full.
    for a, b in pairwise(sorted(infos, key=lambda info: info.header_offset)):
        if a.header_offset + 30 + a.compress_size > b.header_offset:
            raise UploadError("Overlapping entries in the archive")
    return infos


class _Meter:
    """Reads entries of one archive, stopping at the first cap crossed by the bytes actually decompressed."""

    def __init__(self, z: _Zip, limits: UploadLimits, budget: int):
        self.z, self.limits, self.budget = z, limits, budget
        self.total = 0

    def copy(self, info: zipfile.ZipInfo, sink: Callable[[bytes], object]) -> None:
        limits, shown = self.limits, _show(info.orig_filename)
        bomb = f"{limits.max_ratio:g} to 1: refused as a possible zip bomb"
        start, out = self.z.raw.consumed, 0
        try:
            with self.z.zf.open(info) as src:
                while chunk := src.read(_CHUNK):
                    out += len(chunk)
                    self.total += len(chunk)
                    if out > limits.max_file_bytes:
                        raise UploadError(f"Archive entry {shown} is larger than {_size(limits.max_file_bytes)}")
                    if self.total > self.budget:
                        raise UploadError(f"The upload expands to more than {_size(limits.max_total_bytes)}")
                    if out > limits.ratio_grace_bytes and out > limits.max_ratio * (self.z.raw.consumed - start):
                        raise UploadError(f"Archive entry {shown} is compressed more than {bomb}")
                    if self.total > limits.ratio_grace_bytes and self.total > limits.max_ratio * self.z.size:
                        raise UploadError(f"The archive is compressed more than {bomb}")
                    sink(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError):  # UTF-8 flag on a non-UTF-8 name
            raise UploadError(f"Corrupt archive entry {shown}") from None


# --- XLSX ---------------------------------------------------------------------------------------------------


def validate_xlsx(path: Path, limits: UploadLimits = DEFAULT_LIMITS) -> None:
    """A workbook openpyxl opens, whose package passes the ZIP checks and whose XML parts are well-formed and
    free of DTDs, entities and external references (so a billion-laughs part is refused at its DOCTYPE).

    Macro-enabled workbooks (with ``xl/vbaProject.bin``) are refused: inputs are data, not code.
    """
    _check_xlsx(path, limits, limits.max_total_bytes)


class _NoTarget:
    """A parse target that takes no events: the parse only checks well-formedness and refuses DTDs."""


def _check_xlsx(path: Path, limits: UploadLimits, budget: int) -> int:
    """Returns what the parts expanded to, which counts against a ZIP's total when the workbook is inside one."""
    _check_file_size(path, limits)
    with _open_zip(path, limits) as z:
        infos = _check_entries(z, limits)
        names = set(z.zf.namelist())
        if not set(_XLSX_PARTS) <= names:
            raise UploadError("Not an XLSX workbook (no [Content_Types].xml or xl/workbook.xml)")
        if _MACROS in names:
            raise UploadError("Macro-enabled workbooks are not accepted: save the workbook as .xlsx")
        meter = _Meter(z, limits, budget)
        for info in infos:
            if info.is_dir():
                continue
            if not info.filename.endswith((".xml", ".rels")):
                meter.copy(info, lambda _chunk: None)
                continue
            parser = DefusedXMLParser(target=_NoTarget(), forbid_dtd=True)
            # Keep only the defused handlers: this per-token callback (unused here) is most of expat's parse time.
            parser.parser.DefaultHandlerExpand = None
            try:
                meter.copy(info, parser.feed)
                parser.close()
            except DefusedXmlException:
                raise UploadError(f"XLSX part {_show(info.filename)} declares a DTD or entities") from None
            except ParseError:
                raise UploadError(f"XLSX part {_show(info.filename)} is not well-formed XML") from None
    # openpyxl fails in many ways on a broken package (KeyError, TypeError, its own exceptions...); any of them
    # means the same thing to the caller. Its warnings (unsupported extensions, no default style) are noise.
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            workbook = openpyxl.load_workbook(f, read_only=True, data_only=True, keep_links=False)
        except Exception:
            raise UploadError("Not a valid XLSX workbook") from None
        try:
            if not workbook.sheetnames:
                raise UploadError("The XLSX workbook has no worksheets")
        finally:
            workbook.close()
    return meter.total


# --- ZIP extraction -----------------------------------------------------------------------------------------


def extract_zip(path: Path, dest: Path, limits: UploadLimits = DEFAULT_LIMITS) -> list[str]:
    """Extract a ZIP of input files under ``dest``; returns the relative (``/``-separated) file names written.

    Refused: unsafe paths (``..``, absolute, drive letters, backslashes, control characters), symlinks and other
    special files, duplicate names (case- and normalisation-insensitively, files against folders too), nested
    archives, files other than .csv/.json/.xlsx or not matching their extension, encrypted entries, methods
    other than Stored/Deflate, and any crossed cap. Each file is validated as soon as it is written; on any
    failure everything this call created is removed, so nothing is stored. ``dest`` should be new or empty: a
    file already there is never overwritten (``FileExistsError``, a server-side fault, not an ``UploadError``).
    """
    created: list[Path] = []
    try:
        return _extract(path, dest, limits, created)
    except BaseException:
        for p in reversed(created):
            with suppress(OSError):
                if p.is_dir():
                    p.rmdir()
                else:
                    p.unlink()
        raise


def _extract(path: Path, dest: Path, limits: UploadLimits, created: list[Path]) -> list[str]:
    with _open_zip(path, limits) as z:
        plan = _plan(_check_entries(z, limits), limits)
        if not any(not info.is_dir() for info, _ in plan):
            raise UploadError("The ZIP archive contains no files")
        if not dest.exists():
            dest.mkdir(parents=True)
            created.append(dest)
        root = dest.resolve()
        meter = _Meter(z, limits, limits.max_total_bytes)
        names = []
        for info, parts in plan:
            target = root.joinpath(*parts)
            _makedirs(target if info.is_dir() else target.parent, root, created)
            if info.is_dir():
                continue
            with open(target, "xb") as out:
                created.append(target)
                meter.copy(info, out.write)
            name = "/".join(parts)
            # What a workbook's parts expand to counts against the upload's total (not against the ZIP's ratio).
            meter.budget -= _check_member(target, name, limits, meter.budget - meter.total)
            names.append(name)
        return names


def _plan(infos: list[zipfile.ZipInfo], limits: UploadLimits) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """The entries to extract, with their path parts; refuses unsafe names, special files and duplicates."""
    files: set[str] = set()
    folders: set[str] = set()
    plan = []
    for info in infos:
        name = info.orig_filename
        shown = _show(name)
        if len(name) > limits.max_name_length:
            raise UploadError(f"Path too long in the ZIP: {shown}")
        parts = name.removesuffix("/").split("/")
        if _UNSAFE_NAME.search(name) or any(part in ("", ".", "..") for part in parts):
            raise UploadError(f"Unsafe path in the ZIP: {shown}")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadError(f"Symbolic links are not allowed in the ZIP: {shown}")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UploadError(f"Special files are not allowed in the ZIP: {shown}")
        if parts[0] == "__MACOSX" or parts[-1] in _JUNK_FILES:
            continue
        keys = [unicodedata.normalize("NFC", "/".join(parts[: i + 1])).casefold() for i in range(len(parts))]
        if any(key in files for key in keys[:-1]) or keys[-1] in files or (not info.is_dir() and keys[-1] in folders):
            raise UploadError(f"Duplicate name in the ZIP: {shown}")
        folders.update(keys[:-1])
        if info.is_dir():
            folders.add(keys[-1])
        else:
            suffix = PurePosixPath(parts[-1]).suffix.lower()
            if suffix in _ARCHIVE_SUFFIXES:
                raise UploadError(f"Nested archives are not allowed in the ZIP: {shown}")
            if suffix not in _SUFFIX_KINDS:
                raise UploadError(f"Only .csv, .json and .xlsx files are accepted in a ZIP: {shown}")
            files.add(keys[-1])
        plan.append((info, parts))
    return plan


def _makedirs(folder: Path, root: Path, created: list[Path]) -> None:
    missing = []
    while folder != root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir()
        created.append(f)
    if not folder.resolve().is_relative_to(root):  # a symlink already under dest; never follow it out
        raise UploadError("Unsafe path in the ZIP")


def _check_member(target: Path, name: str, limits: UploadLimits, budget: int) -> int:
    """Validate an extracted file by content; returns the bytes a workbook's parts expanded to."""
    expected = _SUFFIX_KINDS[target.suffix.lower()]
    try:
        with open(target, "rb") as f:
            found = _signature(f.read(_HEAD))
        if found and found[1]:
            raise UploadError(f"Nested archives are not allowed ({found[0]})")
        kind = sniff(target, limits)
        if kind == "zip":
            raise UploadError("Nested archives are not allowed (ZIP archive)")
        if kind != expected:
            raise UploadError(f"The content is {kind.upper()}, but the name says {expected.upper()}")
        if kind == "csv":
            validate_csv(target, limits)
        elif kind == "xlsx":
            return _check_xlsx(target, limits, budget)
        return 0
    except UploadError as e:
        raise UploadError(f"{name}: {e}") from None


# --- the entry point ----------------------------------------------------------------------------------------


def accept_upload(path: Path, original_name: str, dest: Path, limits: UploadLimits = DEFAULT_LIMITS) -> list[str]:
    """Check an uploaded file and store the job's inputs under ``dest``; returns their relative names.

    A ZIP is extracted (``extract_zip``); a CSV, JSON or XLSX file is validated and copied (``path`` is left to
    the caller) under a safe name derived from ``original_name``, with the extension of its actual type.
    """
    kind = sniff(path, limits)
    if kind == "zip":
        return extract_zip(path, dest, limits)
    if kind == "csv":
        validate_csv(path, limits)
    elif kind == "xlsx":
        validate_xlsx(path, limits)
    name = _safe_name(original_name, kind, limits)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name
    with open(path, "rb") as src, open(target, "xb") as out:
        try:
            shutil.copyfileobj(src, out, 1 << 20)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return [name]


def _safe_name(original_name: str, kind: str, limits: UploadLimits) -> str:
    """Basename only, odd characters replaced, no leading dot, and the extension of the type found."""
    base = re.split(r"[\\/]", original_name)[-1]
    base = _NAME_ODD.sub("_", unicodedata.normalize("NFC", base)).strip(" ._")
    stem, dot, ext = base.rpartition(".")
    if not (dot and len(ext) <= 5 and ext.isascii() and ext.isalnum() and not ext.isdigit()):
        stem = base
    room = limits.max_name_length - len(kind) - 1
    stem = stem.encode()[:room].decode(errors="ignore").strip(" ._")
    return f"{stem or 'input'}.{kind}"

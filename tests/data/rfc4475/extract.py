"""Rebuild this corpus from the text of RFC 4475.

Usage: ``python extract.py rfc4475.txt`` (the plain-text RFC as published by the RFC
Editor). The script writes ``valid/<name>.dat`` and ``invalid/<name>.dat`` beside itself.

How the bytes are obtained:

1. Every "Message Details : <name>" block of RFC 4475 section 3 is taken from the text,
   page furniture (footer, form feed, running header) removed and the 6-column artwork
   indent stripped; every line ends with CRLF.
2. The markup of RFC 4475 section 2 is resolved: ``<allOneLine>`` blocks are joined
   without line breaks (section 2.1), ``<hex>..</hex>`` becomes the octets it spells
   (section 2.2, also when it spans several lines, as in mpart01), and
   ``<repeat count=N>..</repeat>`` is expanded (section 2.3).
3. The result is checked against the bit-exact archive of Appendix A (base64 of a
   gzip'ed tar, decoded as the RFC's Figure 58 describes). The section 3 rendering
   cannot show the blank lines that end a message or fall on a page break, so the only
   differences allowed are in the length of runs of CRLFs; the archive decides
   those (the RFC says it exists "to resolve any remaining ambiguity"). One message
   (trws) differs in content: the archive spells "host1.examle.com" where the text
   says "host1.example.com"; the archive is kept, as it is the bit-exact reference.
   Anything else is reported as an error and nothing is written.
"""

from __future__ import annotations

import base64
import io
import re
import sys
import tarfile
from pathlib import Path

#: Section 3.1.1 (valid syntax), 3.2 and 3.3 messages our parser accepts.
VALID = {
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason", "badbranch", "unksm2",
    "bext01", "invut", "regaut01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt",
    "sdp01", "inv2543", "baddate",
}  # fmt: skip
#: Section 3.1.2 messages plus the 3.3 ones our parser refuses (with a status or a drop).
INVALID = {
    "badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri",
    "lwsstart", "trws", "escruri", "regbadct", "badaspec", "baddn", "badvers",
    "mismatch01", "mismatch02", "bigcode", "insuf", "unkscm", "novelsc", "multi01", "mcl01",
}  # fmt: skip
#: Known content differences between section 3 and Appendix A: (text, archive).
ARCHIVE_ERRATA = {"trws": (b"host1.example.com", b"host1.examle.com")}

_PAGE_FOOTER = re.compile(r"^Sparks, et al\. .*\[Page \d+\]$")
_PAGE_BREAK = "\x00page-break"


def _strip_pages(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _PAGE_FOOTER.match(lines[i]):
            while out and out[-1] == "":
                out.pop()
            i += 1
            if i < len(lines) and lines[i] == "\f":
                i += 1
            if i < len(lines) and lines[i].startswith("RFC 4475 "):
                i += 1
            while i < len(lines) and lines[i] == "":
                i += 1
            out.append(_PAGE_BREAK)
            continue
        out.append(lines[i])
        i += 1
    return out


def _resolve_inline(s: str) -> str:
    repeat = re.compile(r"<repeat count=(\d+)>((?:(?!<repeat).)*?)</repeat>", re.S)
    while "<repeat" in s:
        s2 = repeat.sub(lambda m: _resolve_inline(m.group(2)) * int(m.group(1)), s, count=1)
        if s2 == s:
            raise ValueError(f"unbalanced <repeat> in {s!r}")
        s = s2
    return re.sub(
        r"<hex>([0-9A-Fa-f]*)</hex>", lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), s
    )


def section3_messages(text: str) -> dict[str, bytes]:
    lines = _strip_pages(text.split("\n"))
    found: dict[str, bytes] = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^      Message Details : (\S+)$", lines[i])
        i += 1
        if not m:
            continue
        i += 1  # the blank line after the title
        block: list[str] = []
        while i < len(lines) and (lines[i] in ("", _PAGE_BREAK) or lines[i].startswith("      ")):
            block.append(lines[i])
            i += 1
        while block and block[-1] in ("", _PAGE_BREAK):
            block.pop()
        block = [b[6:] for b in block if b != _PAGE_BREAK]
        out: list[str] = []
        j = 0
        while j < len(block):
            tag = block[j]
            if tag in ("<allOneLine>", "<hex>"):
                end = block.index("</" + tag[1:], j)
                inner = "".join(block[j + 1 : end])
                out.append(inner if tag == "<allOneLine>" else f"<hex>{inner}</hex>")
                j = end + 1
            else:
                out.append(tag)
                j += 1
        found[m.group(1)] = "".join(_resolve_inline(x) + "\r\n" for x in out).encode("latin-1")
    return found


def appendix_archive(text: str) -> dict[str, bytes]:
    lines = text.split("\n")
    start = lines.index("   -- BEGIN MESSAGE ARCHIVE --")  # the second marker is the data
    end = lines.index("   -- END MESSAGE ARCHIVE --")
    b64 = "".join(x.strip() for x in lines[start + 1 : end] if re.match(r"^\s*\S+\s*$", x))
    archive = tarfile.open(fileobj=io.BytesIO(base64.b64decode(b64)))
    result: dict[str, bytes] = {}
    for member in archive.getmembers():
        f = archive.extractfile(member)
        if f is not None:
            result[member.name.removesuffix(".dat")] = f.read()
    return result


def _same_but_crlf_runs(a: bytes, b: bytes) -> bool:
    def squash(x: bytes) -> bytes:
        return re.sub(rb"(\r\n)+", b"\r\n", x)

    return squash(a) == squash(b)


def main(rfc_path: str) -> int:
    text = Path(rfc_path).read_text(encoding="ascii")
    from_text = section3_messages(text)
    archive = appendix_archive(text)
    problems = []
    if set(from_text) != VALID | INVALID or VALID & INVALID:
        problems.append(f"classification does not cover section 3: {sorted(from_text)}")
    for name, rendered in from_text.items():
        exact = archive[name]
        if name in ARCHIVE_ERRATA:
            rendered = rendered.replace(*ARCHIVE_ERRATA[name])
        if rendered != exact and not _same_but_crlf_runs(rendered, exact):
            problems.append(f"{name}: section 3 and Appendix A disagree beyond blank lines")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    here = Path(__file__).parent
    for name in from_text:
        folder = here / ("valid" if name in VALID else "invalid")
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.dat").write_bytes(archive[name])
    print(f"wrote {len(from_text)} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

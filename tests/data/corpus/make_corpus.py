#!/usr/bin/env python3
"""Build sentences.txt from the Debian package r-cran-janeaustenr (1.0.0-1).

Usage:
    apt-get download r-cran-janeaustenr=1.0.0-1      # -> r-cran-janeaustenr_1.0.0-1_all.deb
    python3 make_corpus.py --deb r-cran-janeaustenr_1.0.0-1_all.deb --out sentences.txt
    python3 make_corpus.py --novels all --out all.txt  # all six novels (~31k lines)

Only the Python standard library is used. The .deb is an `ar` archive whose
data.tar.* holds the R lazy-load database data/Rdata.rdx + Rdata.rdb; that is
parsed here with a minimal reader for R's XDR serialisation format (character
vectors, lists, pairlists), giving one string per line of the Gutenberg text.
"""

import argparse
import bz2
import gzip
import io
import lzma
import re
import struct
import tarfile
import zlib

NOVELS = ["prideprejudice", "sensesensibility", "persuasion", "northangerabbey", "emma", "mansfieldpark"]
DATA_DIR = "./usr/lib/R/site-library/janeaustenr/data/"


# ---------------------------------------------------------------- .deb reading
def deb_members(path):
    b = open(path, "rb").read()
    assert b[:8] == b"!<arch>\n", "not an ar archive"
    p, out = 8, {}
    while p < len(b):
        name = b[p : p + 16].decode().strip().rstrip("/")
        size = int(b[p + 48 : p + 58].decode().strip())
        out[name] = b[p + 60 : p + 60 + size]
        p += 60 + size + (size & 1)
    return out


def read_data_files(deb, wanted):
    for name, blob in deb_members(deb).items():
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(blob)) as tf:  # xz/gz/bz2 auto-detected
                return {w: tf.extractfile(DATA_DIR + w).read() for w in wanted}
    raise SystemExit("data.tar not found in " + deb)


# ------------------------------------------------- minimal R unserialize (XDR)
class _R:
    def __init__(s, b):
        s.b, s.p, s.refs = b, 0, []

    def i(s):
        v = struct.unpack_from(">i", s.b, s.p)[0]
        s.p += 4
        return v

    def run(s):
        assert s.b[:2] == b"X\n", "only XDR serialisation supported"
        s.p = 2
        ver = s.i()
        s.i()
        s.i()
        if ver == 3:
            n = s.i()
            s.p += n  # native encoding name
        return s.item()

    def item(s):
        f = s.i()
        t = f & 0xFF
        attr = f & (1 << 9)
        tag = f & (1 << 10)
        if t == 254:
            return None  # NULL
        if t in (241, 242, 250, 251, 252, 253):
            return None  # special envs
        if t == 255:  # reference
            return s.refs[(f >> 8) - 1] if f >> 8 else s.refs[s.i() - 1]
        if t == 9:  # CHARSXP
            n = s.i()
            if n == -1:
                return None
            v = s.b[s.p : s.p + n].decode("utf-8")
            s.p += n
            return v
        if t == 1:  # SYMSXP
            v = ("sym", s.item())
            s.refs.append(v)
            return v
        if t in (2, 6):  # pairlist / language
            if attr:
                s.item()
            k = s.item() if tag else None
            car = s.item()
            cdr = s.item()
            return [(k[1] if k else None, car)] + (cdr if isinstance(cdr, list) else [])
        if t in (16, 19, 20):  # STRSXP, VECSXP
            v = [s.item() for _ in range(s.i())]
        elif t in (10, 13):  # LGLSXP, INTSXP
            n = s.i()
            v = list(struct.unpack_from(">%di" % n, s.b, s.p))
            s.p += 4 * n
        elif t == 14:  # REALSXP
            n = s.i()
            v = list(struct.unpack_from(">%dd" % n, s.b, s.p))
            s.p += 8 * n
        else:
            raise ValueError("unsupported SEXP type %d" % t)
        if attr:
            return {"value": v, "attr": dict(s.item())}
        return v


def unserialize(b):
    return _R(b).run()


def lazyload(rdx, rdb):
    idx = unserialize(gzip.decompress(rdx))
    idx = dict(zip(idx["attr"]["names"], idx["value"]))
    var = idx["variables"]
    comp = (idx.get("compressed") or [1])[0]
    out = {}
    for name, (off, ln) in zip(var["attr"]["names"], var["value"]):
        chunk = rdb[off : off + ln]
        if comp in (2, 3):
            dec = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": lambda x: x}[chunk[4:5]]
            raw = dec(chunk[5:])
        else:
            raw = zlib.decompress(chunk[4:])
        out[name] = unserialize(raw)
    return out


# ------------------------------------------------------------ text cleaning
HEADING = re.compile(
    r"^(CHAPTER|VOLUME|Chapter)\b|^(THE END|FINIS|Finis)$|^\(\d{4}\)$|^[\s*]+$"
    r"|^(by|By)( Jane Austen)?( \(\d{4}\))?$|^Jane Austen( \(\d{4}\))?$"
)  # title-page lines
ABBREV = {
    "Mr",
    "Mrs",
    "Dr",
    "St",
    "Col",
    "Capt",
    "Messrs",
    "Esq",
    "Rev",
    "Gen",
    "Adm",
    "Lt",
    "Sr",
    "Jr",
    "Edw",
    "Wm",
    "No",
    "viz",
    "i.e",
    "e.g",
}
BOUNDARY = re.compile(r'([.!?]+["\')\]]*)\s+(?=["\'(]*[A-Z0-9])')


def paragraphs(lines):
    """Join hard-wrapped lines into paragraphs; drop headings, editorial notes."""
    para = []
    for raw in lines + [""]:
        line = (raw or "").strip()
        if line == "A NOTE ON THE TEXT":  # modern editorial note (Northanger Abbey)
            break
        if not line or HEADING.search(line) or (line.startswith("[") and line.endswith("]")):
            if para:
                yield " ".join(para)
                para = []
            continue
        para.append(line)


def clean(text):
    text = text.replace("_", "")  # Gutenberg _italics_ markup
    text = re.sub(r"\[[^\]]*\]", "", text)  # editorial [notes]
    return re.sub(r"\s+", " ", text).strip()


def sentences(par):
    out, start = [], 0
    for m in BOUNDARY.finditer(par):
        before = par[start : m.start(1)]
        word = re.split(r"[\s\"'(]", before)[-1] if before else ""
        if m.group(1) == "." and (word in ABBREV or re.fullmatch(r"[A-Z]", word)):
            continue  # Mr. / Mrs. / initials
        out.append(par[start : m.end(1)].strip())
        start = m.end()
    out.append(par[start:].strip())
    return [fix_quotes(s) for s in out if s]


def fix_quotes(s):
    """Splitting dialogue leaves a dangling opening/closing quote; drop it."""
    if s.count('"') % 2:
        if s.startswith('"'):
            s = s[1:]
        elif s.endswith('"'):
            s = s[:-1]
    return s.strip()


def build(novels, names, para_min_words=250):
    seen, lines = set(), []

    def add(s):
        if len(s.split()) >= 2 and re.search(r"[a-z]", s) and s not in seen:
            seen.add(s)
            lines.append(s)

    for name in names:
        for par in paragraphs(novels[name]):
            par = clean(par)
            if not par:
                continue
            sents = sentences(par)
            if len(par.split()) >= para_min_words and len(sents) > 1:
                add(fix_quotes(par))  # long paragraph as one line
            for s in sents:
                add(s)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deb", default="r-cran-janeaustenr_1.0.0-1_all.deb")
    ap.add_argument("--out", default="sentences.txt")
    ap.add_argument(
        "--novels",
        default="prideprejudice",
        help="comma list from %s, or 'all' (default: prideprejudice)" % ",".join(NOVELS),
    )
    a = ap.parse_args()
    names = NOVELS if a.novels == "all" else a.novels.split(",")
    assert all(n in NOVELS for n in names), names
    deb, dst = a.deb, a.out
    files = read_data_files(deb, ["Rdata.rdx", "Rdata.rdb"])
    novels = lazyload(files["Rdata.rdx"], files["Rdata.rdb"])
    lines = build(novels, names)
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d lines to %s" % (len(lines), dst))


if __name__ == "__main__":
    main()

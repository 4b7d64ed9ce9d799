#!/usr/bin/env python3
"""Mutation run over the native core: does the test suite notice a bug?

Each mutation below replaces one exact piece of text in one file with a
plausible bug.  They are applied one at a time to a scratch copy of the
repository (the tracked and untracked, not ignored, files of the working
tree), which is rebuilt into a scratch virtual environment and tested with
the native test set (tests/ without split/, entropy/ and cuda/, ``-x``).
A mutation is *caught* when a test fails (or the build fails, or the run
crashes or times out), *survived* when every test passes.  The test files
most likely to catch a mutation (FIRST_BY_AREA, or its own `first`) run on
their own first, so that a caught mutation costs seconds of testing; only
if they pass does the whole native test set run.

The scratch copy keeps its CMake build folder between mutations, so each
rebuild compiles only what the mutation touched (FEATCODEC_CUDA=OFF: no
test here runs CUDA, and src/cpp/cuda mutations are not meaningful without
a GPU).  A header such as table_math.h is in every translation unit, so its
mutations rebuild everything: several minutes each on 2 busy cores.

Usage:
  python tools/mutate.py                  # every mutation
  python tools/mutate.py --only tables    # ids starting with "tables"
  python tools/mutate.py --list           # the list, and whether each text is found
  python tools/mutate.py --markdown mutations.md   # also the result table, in Markdown
Options: --scratch DIR (default: a new folder under /tmp), --keep (leave it),
--profile dev|ci (HYPOTHESIS_PROFILE, default dev), --timeout SECONDS (per
test run, default 1200), --python PATH (the interpreter whose packages the
scratch venv sees, default this one), --no-baseline-tests (skip the
unmutated tree's test run), --deselect TEST.

Each mutation's text is one distinctive line (or expression) of the source,
so that edits elsewhere in a file leave it valid; when the line itself
changes the mutation needs updating: a text that is not in its file (or is there more than
once) is reported as "text not found" / "text ambiguous" and skipped, not
silently passed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    old: str
    new: str
    description: str
    first: tuple = ()  # test files (or node ids) likely to catch it: run before the whole set
    # Why the mutant behaves as the original (a redundant check, say), for a
    # mutation kept to show that: surviving is then its expected result.
    equivalent: str = ""


MUTATIONS = [
    # --- the review's mutations ------------------------------------------------------
    Mutation(
        "coder-checksum-low16", "src/cpp/coder/codec.cpp",
        "if (message_checksum(seed, hashes, header.checksum_bytes) != stored_checksum)",
        "if ((message_checksum(seed, hashes, header.checksum_bytes) & 0xFFFF) != (stored_checksum & 0xFFFF))",
        "the checksum compared on its low 16 bits only"),
    Mutation(
        "coder-index-first-run", "src/cpp/coder/codec.cpp",
        "if (d == size_t(-1)) return;",
        "return;",
        "broadcast-index validation checks only the first outer run"),
    Mutation(
        "tables-element-cutoff-target", "src/cpp/tables/table_math.h",
        "const double target = 1.0 / static_cast<double>(int64_t{1} << (precision - 1));",
        "const double target = 1.0 / static_cast<double>(int64_t{1} << precision);",
        "the per-element model's cutoff target 2^(1-P) becomes 2^-P"),
    Mutation(
        "python-threads-none-one", "python/featcodec/_coding.py",
        "    if threads is None:\n        return _available_cores()",
        "    if threads is None:\n        return 1",
        "threads=None means 1 thread instead of every core"),
    # --- tables: quantizer, support, builders, blobs, per-element models ---------------
    Mutation(
        "tables-no-exchange", "src/cpp/tables/table_math.h",
        "  while (losses.size > 0) {\n    const int32_t best = gains.heap[0], cheapest = losses.heap[0];",
        "  while (false && losses.size > 0) {\n    const int32_t best = gains.heap[0], cheapest = losses.heap[0];",
        "the quantizer skips its improving exchanges (not rate-optimal)"),
    Mutation(
        "tables-escape-mass-zero", "src/cpp/tables/table_math.h",
        "dst[len] = sum < 1.0 ? 1.0 - sum : 0.0;",
        "dst[len] = 0.0;",
        "from_pmf gives the escape no mass when a row sums to less than 1"),
    Mutation(
        "tables-raw-bits-free", "src/cpp/tables/table_math.h",
        "return 6 + static_cast<uint64_t>(63 - count_leading_zeros64(e));",
        "return 1 + static_cast<uint64_t>(63 - count_leading_zeros64(e));",
        "the support search undercounts an escape's raw code (1 + nb bits, not 6 + nb)"),
    Mutation(
        "tables-support-no-descent", "src/cpp/tables/table_math.h",
        "            a = na, b = nb, cost = c, improved = true;",
        "            a = na, b = nb, cost = c, improved = false;",
        "the support search stops after the first pass of moves"),
    Mutation(
        "tables-support-no-shift", "src/cpp/tables/table_math.h",
        "    for (int m = 0; m < 6; ++m) {",
        "    for (int m = 0; m < 4; ++m) {",
        "the support search never slides the whole support"),
    Mutation(
        "tables-support-no-full-fallback", "src/cpp/tables/table_math.h",
        "detail::support_cost(w, len, 0, len, precision, scratch, lg) < cost)",
        "detail::support_cost(w, len, 0, len, precision, scratch, lg) < 0)",
        "the support search never falls back to every column"),
    Mutation(
        "tables-fixed-log2-short", "src/cpp/tables/table_math.h",
        "for (int bit = kLog2FracBits - 1; bit >= 0; --bit) {",
        "for (int bit = kLog2FracBits - 1; bit >= 8; --bit) {",
        "the fixed-point log2 keeps 40 fraction bits instead of 48"),
    Mutation(
        "tables-parametric-outside", "src/cpp/tables/table_math.h",
        "return 2.0 * det_family_sf(family, (static_cast<double>(h) + 0.5) / s);",
        "return 2.0 * det_family_sf(family, (static_cast<double>(h) + 1.0) / s);",
        "a parametric table's outside mass is measured from h + 1, not h + 1/2"),
    Mutation(
        "tables-element-floor", "src/cpp/tables/table_math.h",
        "return hs >= static_cast<double>(h_max) ? h_max : static_cast<int64_t>(ceil(hs));",
        "return hs >= static_cast<double>(h_max) ? h_max : static_cast<int64_t>(floor(hs));",
        "the per-element half-width h rounds T * s down"),
    Mutation(
        "tables-element-cdf-shift", "src/cpp/tables/table_math.h",
        "const double t = ((static_cast<double>(k) - 0.5) - mean) / scale;",
        "const double t = ((static_cast<double>(k) - 0.4375) - mean) / scale;",
        "the per-element CDF is evaluated at k - 7/16 instead of k - 1/2"),
    Mutation(
        "tables-scale-index-upper", "src/cpp/tables/table_math.h",
        "base = base[half] < s ? base + half : base;",
        "base = base[half] <= s ? base + half : base;",
        "scale_index finds the first table above the scale, not the first not below",
        equivalent="the search ends at the last entry below s (the mutant: not above s), then adds 1 if that "
                   "entry is below s; for s equal to entry j both give j, otherwise both stop at the same entry, "
                   "so they differ only on repeated entries, and table scales must be strictly increasing "
                   "(ValueError otherwise)"),
    Mutation(
        "tables-scale-indexer-ties", "src/cpp/tables/scale_indexer.h",
        "while (table_[i] < s) ++i;",
        "while (table_[i] <= s && i + 1 < n_) ++i;",
        "the host scale index maps a scale equal to a table entry to the next table"),
    Mutation(
        "tables-det-exp-degree", "src/cpp/tables/detmath.h",
        "for (int k = 13; k >= 1; --k) p = 1.0 + p * r / k;",
        "for (int k = 9; k >= 1; --k) p = 1.0 + p * r / k;",
        "the deterministic exp uses a degree-9 polynomial (about 1e-11 relative error)"),
    Mutation(
        "tables-blob-no-crc", "src/cpp/tables/tables.cpp",
        'if (get_u32(data + size - 4) != crc32(data, size - 4)) fail("checksum mismatch");',
        'if (false) fail("checksum mismatch");',
        "a table blob's CRC is not checked"),
    Mutation(
        "tables-blob-no-sum-check", "src/cpp/tables/tables.cpp",
        '    if (sum != total) fail(row_name(i) + ": frequencies must sum to 2^precision");',
        "",
        "from_bytes leaves the row sums to the constructor (validates after allocating)"),
    Mutation(
        "tables-enc-rcp-floor", "src/cpp/tables/tables.cpp",
        "enc[s] = {static_cast<uint64_t>((numerator + freq - 1) / freq),",
        "enc[s] = {static_cast<uint64_t>(numerator / freq),",
        "the encoder's reciprocal rounds down (wrong quotients for some states)"),
    Mutation(
        "tables-lookup-off-by-one", "src/cpp/tables/tables.cpp",
        "      while (cdf[s + 1] <= slot) ++s;",
        "      while (cdf[s + 1] < slot) ++s;",
        "the decoder's slot lookup points one symbol too early at boundaries",
        equivalent="the lookup is a lower bound that decoders scan forward from: the scalar decoder steps past "
                   "a symbol ending at the slot (cdf[s + 1] <= slot), and the vector decoders' bucket entry for a "
                   "first symbol ending at the bucket's start says every slot is past it (end0 - 1 below the "
                   "bucket), so the next symbol, or the scalar scan, is taken; a cost of one compare, no change "
                   "in any decoded value"),
    Mutation(
        "tables-lookup-one-late", "src/cpp/tables/tables.cpp",
        "      lookup[b] = static_cast<uint16_t>(s);",
        "      lookup[b] = static_cast<uint16_t>(s + (b > 0 && s < lengths_[i]));",
        "the decoder's slot lookup starts one symbol past the first one in a bucket"),
    # --- coder -------------------------------------------------------------------------
    Mutation(
        "coder-padded-varint", "src/cpp/coder/varint.h",
        'if (b == 0 && i > 0) throw DecodeError("corrupt message: overlong varint");',
        "",
        "the varint reader accepts padded (non-canonical) varints"),
    Mutation(
        "coder-escape-length", "src/cpp/coder/chunk_kernels.inc",
        'if (nb > kMaxEscapeBits) throw DecodeError("corrupt message: escape length out of range");',
        "",
        "an escape's length field is not bounded",
        equivalent="a length of 34 to 63 bits makes the code at least 2^34 - 1, so the value is at least 2^33 - 1 "
                   "beyond the support, outside int32 for any support, and the next check refuses it; the bound "
                   "also keeps lo - 1 - (u >> 1) from signed overflow at 63 bits, which only a sanitizer build "
                   "(tools/sanitize.sh) can see"),
    Mutation(
        "coder-escape-int32", "src/cpp/coder/chunk_kernels.inc",
        'if (v < INT32_MIN || v > INT32_MAX) throw DecodeError("corrupt message: escaped value outside int32");',
        "",
        "an escaped value outside int32 is not refused"),
    Mutation(
        "coder-information-escape-bits", "src/cpp/coder/escape.h",
        "return kEscapeLengthBits + escape_payload_bits(escape_code(v, lo, hi));",
        "return kEscapeLengthBits + escape_payload_bits(escape_code(v, lo, hi) + 1);",
        "information_content counts some escapes' raw bits wrongly"),
    Mutation(
        "coder-escapes-flag-unchecked", "src/cpp/coder/codec.cpp",
        'if (header.escapes && !escapes) throw DecodeError("corrupt message: escapes flagged, but no chunk has any");',
        "",
        "the escapes bit set on a message without escapes is accepted (two encodings of the same values)"),
    Mutation(
        "coder-bare-final-state", "src/cpp/coder/codec.cpp",
        "} else if (stored_checksum != 0) {",
        "} else if (false) {",
        "without a checksum, lane 0 of the first chunk may end at any state"),
    Mutation(
        "coder-later-chunk-final-state", "src/cpp/coder/codec.cpp",
        "if (outcomes[c].lane0_end != 0)",
        "if (false)",
        "lane 0 of a chunk after the first may end at any state"),
    Mutation(
        "coder-required-checksum-ignored", "src/cpp/coder/codec.cpp",
        "if (header.checksum_bytes < options.min_checksum_bytes)",
        "if (false)",
        "decode(..., checksum=True) accepts a message without (or with a shorter) checksum"),
    Mutation(
        "coder-context-unhashed", "src/cpp/coder/codec.cpp",
        "for (size_t i = 0; i < context.size(); i += 8) {",
        "for (size_t i = 0; i < context.size() && false; i += 8) {",
        "the checksum covers the context's length but not its bytes"),
    Mutation(
        "coder-empty-chunk", "src/cpp/coder/codec.cpp",
        'if (lengths.back() == 0) throw DecodeError("corrupt message: empty chunk");',
        "",
        "the chunk directory may list an empty chunk",
        equivalent="no chunk of 0 bytes decodes: every chunk holds at least one symbol, and its reader needs a "
                   "lane state, a start-up count, an escape size or a final state byte before any symbol, so it "
                   "raises DecodeError (\"truncated message\") for 0 bytes; the check only names the problem "
                   "sooner"),
    Mutation(
        "coder-startup-not-canonical", "src/cpp/coder/chunk_kernels.inc",
        'if (x >= kStateLow) throw DecodeError("corrupt message: start-up count too large");',
        "(void)x;",
        "start-up counts larger than the encoder's are accepted (non-canonical messages)"),
    Mutation(
        "coder-padded-final-state", "src/cpp/coder/chunk_kernels.inc",
        "if (padded || x >= kStateLow)",
        "if (x >= kStateLow)",
        "lane 0's final state may carry a zero high byte (non-canonical)"),
    Mutation(
        "coder-lane-head-wide-counts", "src/cpp/coder/lane_head.h",
        "if (widest != width)",
        "if (widest > width)",
        "the lane head's start-up counts may be wider than they need (non-canonical)"),
    Mutation(
        "coder-lane-head-padding", "src/cpp/coder/lane_head.h",
        "if ((bit_ & 7) && (p_[bit_ >> 3] >> (bit_ & 7)))",
        "if (false)",
        "the lane head's padding bits are not checked"),
    Mutation(
        "coder-lane-head-count-range", "src/cpp/coder/lane_head.h",
        "if (startup[l] > uint64_t(lane_symbols(count, l, K)))",
        "if (startup[l] > uint64_t(lane_symbols(count, l, K)) + 1)",
        "a start-up count one beyond its lane's symbols is accepted",
        equivalent="a count of the lane's symbols plus one puts the phase's first symbol before the lane's "
                   "first, so the decoder's start-up entry check refuses it (\"start-up count too large\"); "
                   "the range check is for counts beyond that"),
    Mutation(
        "coder-lane-head-length-base", "src/cpp/coder/lane_head.h",
        "return startup < uint64_t(n_lane) ? 32 : 0;",
        "return startup < uint64_t(n_lane) ? 31 : 0;",
        "the lane head writes a past-start-up state's bit length less 31, not 32 (other bytes)"),
    Mutation(
        "python-required-checksum-true", "python/featcodec/_coding.py",
        "        return 1 if checksum or context else 0",
        "        return 1 if context else 0",
        "decode(..., checksum=True) does not ask the native layer for a checksum"),
    Mutation(
        "python-threads-uncapped", "python/featcodec/_coding.py",
        "    return min(int(threads), cap)",
        "    return int(threads)",
        "threads is not capped at the cores times a small factor"),
    Mutation(
        "python-checksum-true-size", "python/featcodec/_coding.py",
        "        return 4 if checksum else 0",
        "        return 2 if checksum else 0",
        "checksum=True writes a 2-byte checksum instead of 4"),
    # --- the start-up map (coder/start_map.cpp) ----------------------------------------
    Mutation(
        "start-walk-tie-order", "src/cpp/coder/start_map.cpp",
        "return a != b ? a < b : t < u;",
        "return a != b ? a < b : t > u;",
        "the walk orders equal keys by the higher symbol first",
        first=("tests/test_coding.py",)),
    Mutation(
        "start-window-tie-order", "src/cpp/coder/start_map.cpp",
        "return a != b ? a < b : p.symbol < q.symbol;",
        "return a < b;",
        "the general search leaves equal keys unordered",
        first=("tests/test_coding.py",)),
    Mutation(
        "start-rank-no-ties", "src/cpp/coder/start_map.cpp",
        "rank += t < s && a % f_s == 0 && (a / f_s) % 2 == 1;",
        "rank += 0;",
        "the encoder's rank misses equal keys of lower symbols",
        first=("tests/test_coding.py",)),
    Mutation(
        "start-walk-bound", "src/cpp/coder/start_map.cpp",
        "constexpr uint64_t kMaxWalk = 8;",
        "constexpr uint64_t kMaxWalk = 0;",
        "every decode of the map by the general search",
        equivalent="the general search finds the same pair: the walk is only faster"),
    Mutation(
        "start-zero-last-max", "src/cpp/coder/start_map.cpp",
        "if (freq_of(cdf, t) > freq_of(cdf, best)) best = t;",
        "if (freq_of(cdf, t) >= freq_of(cdf, best)) best = t;",
        "the rank-0 symbol the last of the most frequent, not the first",
        first=("tests/test_coding.py",)),

]

# Test files most likely to catch a mutation, by id prefix: run on their own
# first (a caught mutation then costs seconds), then, if they all pass, the
# whole native test set.  A mutation's own `first` overrides these.
FIRST_BY_AREA = {
    "tables-": ("tests/test_tables.py", "tests/test_parametric.py"),
    "coder-": ("tests/test_decode_errors.py", "tests/test_coding.py"),
    "python-": ("tests/test_decode_errors.py", "tests/test_coding.py", "tests/test_parametric_coding.py"),
}


def first_tests(m: Mutation) -> tuple:
    return m.first or next((v for k, v in FIRST_BY_AREA.items() if m.id.startswith(k)), ())


# --- running ------------------------------------------------------------------------------


def run_group(cmd: list[str], cwd: Path, env: dict, timeout: Optional[float] = None) -> tuple[Optional[int], str]:
    """Runs cmd in its own process group, which is killed on a timeout or an
    interrupt (no stray compilers or test subprocesses); (returncode or None
    on timeout, stdout + stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return None, proc.communicate()[0]
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def source_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                         capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f]


def copy_tree(root: Path, dest: Path) -> None:
    """Copies the source files into dest.  A file whose text differs from
    dest's gets a new modification time (not the source's, which may be older
    than a build of a mutated copy left in a reused --scratch folder), so
    that the build recompiles it; an unchanged file keeps its time."""
    for rel in source_files(root):
        src = root / rel
        if not src.is_file():
            continue
        target = dest / rel
        if target.is_file() and target.read_bytes() == src.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        shutil.copymode(src, target)


def base_site_packages(python: str) -> list[str]:
    """The site-packages folders `python` sees, except those holding featcodec."""
    code = "import sys, os; print('\\n'.join(p for p in sys.path if p.endswith('site-packages')))"
    paths = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return [p for p in paths if not os.path.exists(os.path.join(p, "featcodec"))]


def make_venv(scratch: Path, python: str) -> Path:
    venv = scratch / ".mutate-venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    (site / "base.pth").write_text("\n".join(base_site_packages(python)) + "\n")
    return venv / "bin" / "python"


def build(python: Path, scratch: Path) -> tuple[bool, str]:
    env = dict(os.environ, FEATCODEC_CUDA="OFF")
    code, out = run_group([str(python), "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "."],
                          scratch, env)
    return code == 0, out[-3000:]


# The files that catch most mutations soonest run first (pytest keeps this
# order), so that a caught mutation costs little; the rest follow by name.
FIRST = ["tests/test_tables.py", "tests/test_parametric.py", "tests/test_coding.py", "tests/test_decode_errors.py"]


def native_tests(scratch: Path) -> list[str]:
    skip = {"split", "entropy", "cuda"}
    found = sorted(str(p.relative_to(scratch)) for p in (scratch / "tests").glob("test_*.py")) + sorted(
        str(p.relative_to(scratch)) for d in (scratch / "tests").iterdir()
        if d.is_dir() and d.name not in skip and not d.name.startswith((".", "_"))
        for p in d.glob("test_*.py"))
    return [f for f in FIRST if f in found] + [f for f in found if f not in FIRST]


def run_tests(python: Path, scratch: Path, profile: str, timeout: float, deselect: list[str],
              first: tuple = ()) -> tuple[str, str]:
    """("passed" | "failed" | "crashed" | "timeout", the first failing test or a note).

    The tests in `first` run on their own first; if they all pass, the whole
    native test set runs (a mutation survives only that)."""
    all_tests = native_tests(scratch)
    first = [t for t in first if t.split("::")[0] in all_tests]
    for tests in ([first] if first else []) + [all_tests]:
        status, note = run_pytest(python, scratch, profile, timeout, deselect, tests)
        if status != "passed":
            return status, note
    return "passed", ""


def run_pytest(python: Path, scratch: Path, profile: str, timeout: float, deselect: list[str],
               tests: list[str]) -> tuple[str, str]:
    env = dict(os.environ, HYPOTHESIS_PROFILE=profile)
    cmd = [str(python), "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    cmd += [f"--deselect={t}" for t in deselect]
    code, out = run_group(cmd, scratch, env, timeout)
    if code is None:
        return "timeout", f"no result in {timeout:.0f} s"
    if code == 0:
        return "passed", ""
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    if failed:
        return "failed", failed.group(1)
    if code < 0 or "Fatal Python error" in out or "Segmentation fault" in out:
        # faulthandler's traceback names the test that was running.
        frames = re.findall(r'File "[^"]*/(tests/[^"]+\.py)", line \d+ in (test_\w+)', out)
        where = f" in {frames[-1][0]}::{frames[-1][1]}" if frames else ""
        return "crashed", (f"signal {-code}" if code < 0 else "fatal error") + where
    return "failed", (out.strip().splitlines() or ["?"])[-1][:100]


def locate(root: Path, m: Mutation) -> str:
    path = root / m.file
    if not path.is_file():
        return "file not found"
    count = path.read_text().count(m.old)
    return "ok" if count == 1 else "text not found" if count == 0 else f"text ambiguous ({count} matches)"


def tree_version() -> str:
    """The commit the scratch copy is taken from, and whether the tree differs from it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return commit + (" (with uncommitted changes)" if dirty else "")


def markdown_table(rows: list, profile: str, command: str, done: bool, version: str, started: float) -> str:
    caught = sum(r == "caught" for _, r, _ in rows)
    skipped = sum(r == "SKIPPED" for _, r, _ in rows)
    equivalent = sum(r == "survived" and m.equivalent != "" for m, r, _ in rows)
    lines = [
        f"Mutation run started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} over commit {version}: "
        f"`{command}`, HYPOTHESIS_PROFILE={profile}, "
        f"native test set (tests/ without split/, entropy/, cuda/).{'' if done else ' (In progress.)'}",
        "",
        f"{caught} of {len(rows) - skipped} caught" + (f", {equivalent} equivalent (survived, as expected)"
                                                       if equivalent else "")
        + (f", {skipped} skipped (text not found)" if skipped else "") + ".",
        "",
        "| mutation | file | what it breaks | result |",
        "|---|---|---|---|",
    ]
    for m, result, note in rows:
        outcome = result if not note else f"{result}: {note}"
        if result == "caught":
            outcome = f"caught ({note})" if note.startswith(("crashed", "timeout")) else f"caught by {note}"
        if result == "survived" and m.equivalent:
            outcome = f"survived, equivalent: {m.equivalent}"
        lines.append(f"| {m.id} | {m.file} | {m.description} | {outcome.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


ROW = re.compile(r"^(\S+) +(caught|survived|SKIPPED) +(.*?)  \(\d+ s\)$")


def combine(logs: list[str], profile: str, markdown: Optional[str]) -> int:
    """One table from the output of several runs (say, the whole list, then
    the mutations added or tests changed since), in the list's order."""
    found, commands = {}, []
    for log in logs:
        text = Path(log).read_text()
        commands += re.findall(r"^Mutation run (?:started|of) .*?: `([^`]*)`", text, re.MULTILINE)
        for line in text.splitlines():
            row = ROW.match(line)
            if row:
                found[row.group(1)] = (row.group(2), "" if row.group(3) == "passed" else row.group(3))
    by_id = {m.id: m for m in MUTATIONS}
    rows = [(by_id[i], *found[i]) for i in by_id if i in found]
    unknown = sorted(set(found) - set(by_id))
    table = markdown_table(rows, profile, " + ".join(commands) or "?", True, tree_version(), time.time())
    table = table.replace("Mutation run started", "Combined table written", 1)
    if unknown:
        table += f"\nRows for mutations no longer in the list, left out: {', '.join(unknown)}\n"
    if markdown:
        Path(markdown).write_text(table)
    print(table)
    return 0 if all(r != "survived" or m.equivalent for m, r, _ in rows) else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated id prefixes, run in the order given")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--scratch")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--profile", default="dev")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--markdown", help="write the result table (Markdown) to this file, updated as it runs")
    parser.add_argument("--deselect", action="append", default=[], help="a test to leave out (pytest's --deselect)")
    parser.add_argument("--no-baseline-tests", action="store_true",
                        help="build the unmutated tree but do not run its tests first")
    parser.add_argument("--combine", nargs="+", metavar="LOG",
                        help="no run: the table of earlier runs' printed output (a later log's row wins)")
    args = parser.parse_args(argv)
    command = "python tools/mutate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    # Started in the background, a shell ignores SIGINT: take it (and SIGTERM)
    # back, so that an interrupted run still restores the scratch copy and
    # kills its builds and tests.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    if args.combine:
        return combine(args.combine, args.profile, args.markdown)

    prefixes = [p for p in args.only.split(",") if p]
    chosen = [m for p in prefixes for m in MUTATIONS if m.id.startswith(p)] if prefixes else list(MUTATIONS)
    chosen = list(dict.fromkeys(chosen))
    if args.list:
        for m in chosen:
            print(f"{m.id:<34} {locate(REPO, m):<16} {m.file}: {m.description}")
        return 0

    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="featcodec-mutate-"))
    print(f"scratch copy: {scratch}", flush=True)
    version, started = tree_version(), time.time()
    copy_tree(REPO, scratch)
    python = make_venv(scratch, args.python)
    rows = []

    def report(done: bool) -> None:
        if args.markdown:
            Path(args.markdown).write_text(markdown_table(rows, args.profile, command, done, version, started))

    try:
        ok, log = build(python, scratch)
        if not ok:
            print("the unmutated tree does not build:\n" + log)
            return 2
        if not args.no_baseline_tests:
            status, note = run_tests(python, scratch, args.profile, args.timeout, args.deselect)
            if status != "passed":
                print(f"the unmutated tree does not pass its tests ({status}: {note}); stopping")
                return 2
        print(f"unmutated tree: builds{'' if args.no_baseline_tests else ' and passes'}", flush=True)
        for m in chosen:
            found = locate(scratch, m)
            start = time.time()
            if found != "ok":
                rows.append((m, "SKIPPED", f"mutation {found}"))
            else:
                path = scratch / m.file
                original = path.read_text()
                path.write_text(original.replace(m.old, m.new))
                try:
                    ok, log = build(python, scratch)
                    if not ok:
                        rows.append((m, "caught", "the build (it does not compile)"))
                    else:
                        status, note = run_tests(python, scratch, args.profile, args.timeout, args.deselect,
                                                 first_tests(m))
                        rows.append((m, "survived" if status == "passed" else "caught",
                                     note if status == "failed" else f"{status}: {note}" if note else status))
                finally:
                    path.write_text(original)
                    os.utime(path)  # newer than the mutated build, so the next build recompiles it
            print(f"{m.id:<34} {rows[-1][1]:<9} {rows[-1][2]}  ({time.time() - start:.0f} s)", flush=True)
            report(done=False)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    report(done=True)
    print("\n" + markdown_table(rows, args.profile, command, True, version, started))
    missed = [m.id for m, r, _ in rows if r == "survived" and not m.equivalent]
    skipped = sum(r == "SKIPPED" for _, r, _ in rows)
    return 0 if not missed and not skipped else 1


if __name__ == "__main__":
    sys.exit(main())

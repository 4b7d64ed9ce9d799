#!/usr/bin/env python3
"""Checks that no code compiled for an ISA can stand in for baseline code.

The chunk kernels are compiled once per instruction set (src/cpp/coder/
chunk_*.cpp).  Where two objects define the same weak symbol (an inline
function, a template instantiation), the linker keeps one copy for every
caller; if that copy held AVX2 or AVX-512 instructions, baseline code would
run them on a CPU without them, depending on link order.  This script
compiles the kernel files the way CMakeLists.txt does (LTO off, so that the
objects hold machine code) or takes objects given on the command line
(baseline first), then checks with nm and objdump that every ISA object

- defines global symbols only in its own namespace featcodec::<isa>, and
- defines no weak symbol whose code uses an instruction beyond the baseline
  (VEX or EVEX encodings, ymm/zmm/mask registers, BMI1/2, LZCNT, POPCNT,
  MOVBE, SSE3 and later).

Usage: tools/check_isa_symbols.py [--cxx c++] [generic.o isa.o ...]
Exit status 0 when clean; otherwise lists the offending symbols.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNEL_FILES = {  # object name -> (source, namespace of its globals)
    "generic": ("src/cpp/coder/chunk_generic.cpp", "featcodec::generic::"),
    "x86_64_v3": ("src/cpp/coder/chunk_x86_64_v3.cpp", "featcodec::x86_64_v3::"),
    "x86_64_v4": ("src/cpp/coder/chunk_x86_64_v4.cpp", "featcodec::x86_64_v4::"),
}
# The flags CMakeLists.txt gives every file (no -march anywhere), LTO off.
FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-ffp-contract=off", "-fno-fast-math",
         "-DNDEBUG", "-DFEATCODEC_HAVE_X86_64_LEVELS", "-fno-lto"]

# Instructions a baseline (x86-64, SSE2) build never emits.
BEYOND_BASELINE = re.compile(
    r"%[yz]mm|%k[0-7]\b|\{%k|"                      # AVX/AVX-512 registers
    r"^\s*v[a-z]|"                                    # VEX/EVEX-encoded instructions
    r"^\s*(shlx|shrx|sarx|rorx|mulx|andn|bextr|blsi|blsmsk|blsr|bzhi|pdep|pext|"
    r"lzcnt|tzcnt|popcnt|movbe|"
    r"pshufb|palignr|pabs[bwd]|phadd|phsub|pmaddubsw|pmulhrsw|psign|"   # SSSE3
    r"pblend|blendv|pminsd|pmaxsd|pminud|pmaxud|pmulld|ptest|pextr[bdq]|pinsr[bdq]|"  # SSE4.1
    r"pmovzx|pmovsx|pcmpeqq|pcmpgtq|packusdw|round[sp][sd]|dpp[sd]|crc32)\b"
)


def compile_objects(cxx: str, out: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    objects = []
    for name, (source, _) in KERNEL_FILES.items():
        obj = out / f"{name}.o"
        subprocess.run([cxx, *FLAGS, f"-I{ROOT / 'src/cpp'}", "-c", str(ROOT / source), "-o", str(obj)],
                       check=True)
        objects.append((name, obj))
    return objects


def defined_symbols(obj: pathlib.Path) -> list[tuple[str, str, str]]:
    """(type letter, mangled name, demangled name) of the symbols obj defines."""
    raw = subprocess.run(["nm", "--defined-only", str(obj)], check=True, capture_output=True, text=True).stdout
    mangled = [line.split()[-2:] for line in raw.splitlines() if len(line.split()) >= 3]
    names = [m for _, m in mangled]
    demangled = subprocess.run(["c++filt"], input="\n".join(names), check=True, capture_output=True,
                               text=True).stdout.splitlines()
    return [(t, m, d) for (t, m), d in zip(mangled, demangled)]


def function_code(obj: pathlib.Path) -> dict[str, list[str]]:
    """Each function's instructions (mnemonic and operands), by mangled name."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--no-addresses", str(obj)], check=True,
                          capture_output=True, text=True).stdout
    code: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        header = re.match(r"^<(.+)>:$", line.strip())
        if header:
            current = header.group(1)
            code[current] = []
        elif current is not None and line.startswith(("\t", " ")) and line.strip():
            code[current].append(line.strip())
    return code


def check(objects: list[tuple[str, pathlib.Path]]) -> list[str]:
    problems = []
    generic_name, generic_obj = objects[0]
    generic_weak = {m for t, m, _ in defined_symbols(generic_obj) if t in "WV"}
    for name, obj in objects[1:]:
        namespace = KERNEL_FILES.get(name, (None, None))[1]
        code = function_code(obj)
        shared = 0
        for kind, mangled, demangled in defined_symbols(obj):
            if kind in "TDRB" and namespace and not demangled.startswith(namespace):
                problems.append(f"{name}: global symbol outside {namespace}: {demangled}")
            if kind not in "WVu":
                continue
            shared += mangled in generic_weak
            beyond = [insn for insn in code.get(mangled, []) if BEYOND_BASELINE.search(insn)]
            if beyond:
                problems.append(f"{name}: weak symbol with ISA code ({beyond[0]!r} ...): {demangled}")
        weak = sum(k in "WVu" for k, _, _ in defined_symbols(obj))
        print(f"{name}: {weak} weak symbols ({shared} also in {generic_name}), none with ISA code"
              if not any(p.startswith(name + ":") for p in problems) else f"{name}: see below")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cxx", default="c++", help="compiler (default c++)")
    parser.add_argument("objects", nargs="*", type=pathlib.Path, help="objects to check, baseline first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.objects:
            objects = [(next((k for k in KERNEL_FILES if k in o.name), o.stem), o) for o in args.objects]
        else:
            objects = compile_objects(args.cxx, pathlib.Path(tmp))
        problems = check(objects)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

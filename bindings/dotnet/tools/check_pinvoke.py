#!/usr/bin/env python3
"""Lint over the .NET binding's P/Invoke declarations, for what x86-64 Linux
cannot catch at run time (a missing Cdecl only breaks 32-bit Windows, a
`string` declaration only breaks with another allocator or code page).

    check_pinvoke.py --header include/mailoauth.h FILE.cs...   # exit 1 on any problem
    check_pinvoke.py --self-test                               # proves each rule fires

Rules:
- every [DllImport] of the mailoauth library has CallingConvention.Cdecl and
  ExactSpelling = true, and names a function of the header with the same
  number of parameters, each of a C# type of the same width and meaning
  (int32_t -> int, uint32_t -> uint, int64_t -> long, pointers -> IntPtr,
  byte[], a SafeHandle of the right kind, or `out` of one);
- a `char **` the header says is freed with mailoauth_secret_free is
  declared as NativeSecret (zeroed), never NativeString;
- no `bool`, no `string`/`StringBuilder` (parameter or return), no `ulong`/
  `UIntPtr`-as-C-long, no `char` anywhere in a declaration;
- every delegate passed to the library is [UnmanagedFunctionPointer(Cdecl)]
  and matches the header's typedef;
- imports of other libraries (kernel32) must say CallingConvention.Winapi or
  StdCall and are not checked against the header;
- MailOAuthLibrary.AbiVersion equals MAILOAUTH_ABI_VERSION;
- a declaration preceded by `// pinvoke-lint: allow string` (the tests'
  deliberate negative control) may use `string`; it is reported.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HANDLE_TYPES = {"context": "ContextHandle", "op": "OpHandle", "mailbox": "MailboxHandle"}
DELEGATES = {
    "mailoauth_log_fn": "LogFn",
    "mailoauth_store_load_fn": "StoreLoadFn",
    "mailoauth_store_save_fn": "StoreSaveFn",
    "mailoauth_store_lock_fn": "StoreLockFn",
}


def allowed(ctype: str, secret: bool) -> set[str]:
    """C# spellings allowed for one C parameter type (already normalised)."""
    simple = {
        "int32_t": {"int"},
        "uint32_t": {"uint"},
        "int64_t": {"long"},
        "const char*": {"byte[]", "IntPtr"},
        "char*": {"byte[]", "IntPtr"},
        "char**": {"out NativeSecret", "IntPtr"} if secret else {"out NativeString", "IntPtr"},
        "uint8_t*": {"IntPtr"},
        "const uint8_t*": {"byte[]", "IntPtr"},
        "uint8_t**": {"out NativeBytes", "IntPtr"},
        "int64_t*": {"out long", "IntPtr"},
        "void*": {"IntPtr"},
        "mailoauth_blob*": {"IntPtr"},
    }
    if ctype in simple:
        return simple[ctype]
    m = re.fullmatch(r"mailoauth_(\w+?)(\*{1,2})", ctype)
    if m and m.group(1) in HANDLE_TYPES:
        h = HANDLE_TYPES[m.group(1)]
        return {h, "IntPtr"} if m.group(2) == "*" else {"out " + h, "IntPtr"}
    if ctype in DELEGATES:
        d = DELEGATES[ctype]
        return {d, "NativeMethods." + d}
    return set()


RETURNS = {"int32_t": {"int"}, "uint32_t": {"uint"}, "void": {"void"}, "const char*": {"IntPtr"}}


def norm_c_param(p: str) -> str:
    p = " ".join(p.replace("*", " * ").split())
    if p == "void":
        return ""
    words = p.split(" ")
    if len(words) > 1 and re.fullmatch(r"\w+", words[-1]) and words[-1] not in ("char", "int32_t"):
        words = words[:-1]  # the parameter name
    t = " ".join(words)
    return re.sub(r"\s*\*", "*", t)


def parse_header(text: str):
    """{name: (ret, [param types], secret_out)} and {typedef: (ret, [param types])}, plus the ABI version."""
    funcs, typedefs = {}, {}
    for m in re.finditer(r"typedef\s+(\w+)\s*\(\*\s*(\w+)\)\s*\(([^)]*)\)\s*;", text):
        typedefs[m.group(2)] = (m.group(1), [norm_c_param(x) for x in m.group(3).split(",") if norm_c_param(x)])
    # declarations with the doc comment just before them
    for m in re.finditer(r"(/\*\*(?:(?!\*/).)*\*/\s*)?^((?:const\s+)?\w+\s*\**)\s*(mailoauth_\w+)\s*\(([^)]*)\)\s*;",
                         text, re.S | re.M):
        doc = m.group(1) or ""
        ret = re.sub(r"\s*\*", "*", " ".join(m.group(2).replace("*", " * ").split()))
        params = [norm_c_param(x) for x in m.group(4).split(",")]
        params = [x for x in params if x]
        funcs[m.group(3)] = (ret, params, "mailoauth_secret_free" in doc)
    abi = re.search(r"#define MAILOAUTH_ABI_VERSION (\d+)", text)
    return funcs, typedefs, int(abi.group(1)) if abi else None


IMPORT_RE = re.compile(
    r"(?P<pre>(?://[^\n]*\n\s*)*)\[DllImport\((?P<args>[^\]]*)\)\]\s*(?P<attrs>(?:\[[^\]]*\]\s*)*)"
    r"(?P<mods>(?:(?:internal|public|private|static|extern|unsafe)\s+)+)(?P<ret>[\w.\[\]]+)\s+(?P<name>\w+)\s*"
    r"\((?P<params>(?:[^()]|\([^()]*\))*)\)\s*;"
)
DELEGATE_RE = re.compile(
    r"(?P<attrs>(?:\[[^\]]*\]\s*)*)(?:(?:public|internal|private)\s+)?delegate\s+(?P<ret>[\w.\[\]]+)\s+(?P<name>\w+)\s*"
    r"\((?P<params>[^)]*)\)\s*;"
)
FORBIDDEN = re.compile(r"\b(bool|string|String|StringBuilder|char|ulong|UIntPtr|decimal|object)\b")


def cs_params(params: str) -> list[str]:
    out = []
    for p in filter(None, (x.strip() for x in split_top(params))):
        p = re.sub(r"\[\s*[A-Za-z][^\]]*\]\s*", "", p)  # [MarshalAs(...)] etc., not byte[]
        words = p.split()
        if len(words) < 2:
            out.append(p)
            continue
        out.append(" ".join(words[:-1]))  # drop the name
    return out


def split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def check_params(where, cs_text, cparams, whose, ok, expected) -> list[str]:
    """Count and per-parameter type check of one declaration against the C side."""
    ps = cs_params(cs_text)
    if len(ps) != len(cparams):
        return [f"{where}: {len(ps)} parameter(s), {whose} declaration has {len(cparams)}"]
    return [f"{where}: parameter {i + 1} is `{cs}`, {whose} `{c}` needs one of {sorted(expected(c))}"
            for i, (cs, c) in enumerate(zip(ps, cparams)) if not ok(cs, c)]


def lint(sources: dict[str, str], header: str) -> tuple[list[str], int, list[str]]:
    funcs, typedefs, abi = parse_header(header)
    errors, notes, checked = [], [], 0
    lib_consts = set()
    for src in sources.values():
        for m in re.finditer(r'const\s+string\s+(\w+)\s*=\s*"mailoauth"', src):
            lib_consts.add(m.group(1))
    for path, src in sources.items():
        for m in IMPORT_RE.finditer(src):
            checked += 1
            line = src.count("\n", 0, m.start("args")) + 1
            where = f"{path}:{line}: {m['name']}"
            args = m["args"]
            libarg = split_top(args)[0].strip()
            is_ours = libarg == '"mailoauth"' or libarg.split(".")[-1] in lib_consts
            if "ExactSpelling = true" not in args:
                errors.append(f"{where}: DllImport without ExactSpelling = true")
            if is_ours:
                if "CallingConvention = CallingConvention.Cdecl" not in args:
                    errors.append(f"{where}: DllImport without CallingConvention.Cdecl (StdCall is the Windows default)")
            else:
                if not re.search(r"CallingConvention\s*=\s*CallingConvention\.(Winapi|StdCall)", args):
                    errors.append(f"{where}: a system import must state CallingConvention.Winapi")
                continue
            allow_string = "pinvoke-lint: allow string" in m["pre"]
            sig = m["ret"] + " " + m["params"]
            bad = FORBIDDEN.findall(re.sub(r"\[[^\]]*\]", "", sig))
            if allow_string and set(bad) <= {"string"}:
                notes.append(f"{where}: deliberate `string` (negative control)")
                bad = []
            for b in bad:
                errors.append(f"{where}: `{b}` in a declaration (use int/IntPtr/byte[]/a SafeHandle)")
            ep = re.search(r'EntryPoint\s*=\s*"(\w+)"', args)
            cname = ep.group(1) if ep else m["name"]
            if cname not in funcs:
                errors.append(f"{where}: `{cname}` is not a function of include/mailoauth.h")
                continue
            cret, cparams, secret = funcs[cname]
            if m["ret"] not in RETURNS.get(cret, set()) and not (allow_string and m["ret"] == "int"):
                errors.append(f"{where}: returns `{m['ret']}`, the header says `{cret}`")
            errors += check_params(where, m["params"], cparams, "the header's",
                                   lambda cs, c: (allow_string and "string" in cs) or cs in allowed(c, secret),
                                   lambda c: allowed(c, secret))
        for m in DELEGATE_RE.finditer(src):
            line = src.count("\n", 0, m.start("name")) + 1
            where = f"{path}:{line}: delegate {m['name']}"
            typedef = next((k for k, v in DELEGATES.items() if v == m["name"]), None)
            if typedef is None:
                continue  # not a native callback type
            checked += 1
            if "UnmanagedFunctionPointer(CallingConvention.Cdecl)" not in m["attrs"]:
                errors.append(f"{where}: callback delegate without [UnmanagedFunctionPointer(CallingConvention.Cdecl)]")
            for b in FORBIDDEN.findall(m["ret"] + " " + m["params"]):
                errors.append(f"{where}: `{b}` in a callback signature")
            if typedef not in typedefs:
                errors.append(f"{where}: no typedef {typedef} in the header")
                continue
            cret, cparams = typedefs[typedef]
            if m["ret"] not in RETURNS.get(cret, set()):
                errors.append(f"{where}: returns `{m['ret']}`, the typedef says `{cret}`")
            # callbacks receive pointers as IntPtr (the library owns them)
            cb_ok = lambda c: {"IntPtr"} if "*" in c else allowed(c, False)  # noqa: E731
            errors += check_params(where, m["params"], cparams, "the typedef's", lambda cs, c: cs in cb_ok(c), cb_ok)
    for path, src in sources.items():
        m = re.search(r"const\s+uint\s+AbiVersion\s*=\s*(\d+)", src)
        if m and abi is not None and int(m.group(1)) != abi:
            errors.append(f"{path}: AbiVersion {m.group(1)} differs from the header's MAILOAUTH_ABI_VERSION {abi}")
    return errors, checked, notes


SELF_TESTS = [
    # (what must be reported, a declaration)
    ("Cdecl", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, ExactSpelling = true)] static extern int mailoauth_cache_reset(IntPtr ctx); }'),
    ("ExactSpelling", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)] static extern int mailoauth_cache_reset(IntPtr ctx); }'),
    ("`string`", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern int mailoauth_last_error(out string j); }'),
    ("`bool`", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern int mailoauth_op_wait(IntPtr op, bool t); }'),
    ("not a function", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern int mailoauth_op_wiat(IntPtr op, int t); }'),
    ("parameter(s)", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern int mailoauth_op_wait(IntPtr op); }'),
    ("parameter 2", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern int mailoauth_op_wait(IntPtr op, long t); }'),
    ("parameter 5", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern int mailoauth_token_get(IntPtr c, byte[] a, byte[] p, int f, out NativeString t); }'),
    ("returns", 'class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)] static extern NativeString mailoauth_version(); }'),
    ("UnmanagedFunctionPointer", "class N { internal delegate void LogFn(IntPtr u, int level, IntPtr message); }"),
    ("Winapi", '[DllImport("kernel32", ExactSpelling = true)] static extern IntPtr LoadLibraryW(IntPtr p);'),
    ("AbiVersion", "class L { public const uint AbiVersion = 999; }"),
]


def self_test(header: str) -> int:
    failed = 0
    for want, snippet in SELF_TESTS:
        errors, _, _ = lint({"selftest.cs": snippet}, header)
        if not any(want in e for e in errors):
            failed += 1
            print(f"self-test FAILED: expected a problem mentioning {want!r} for: {snippet}\n  got: {errors}")
    good = ('class N { const string Lib = "mailoauth"; [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, '
            'ExactSpelling = true)] static extern int mailoauth_op_wait(OpHandle op, int timeoutMs); }')
    errors, checked, _ = lint({"good.cs": good}, header)
    if errors or checked != 1:
        failed += 1
        print(f"self-test FAILED: a correct declaration was flagged: {errors}")
    print(f"pinvoke-lint self-test: {len(SELF_TESTS) + 1 - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[3]
    header_path = root / "include" / "mailoauth.h"
    if "--header" in argv:
        i = argv.index("--header")
        header_path = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    header = header_path.read_text(encoding="utf-8")
    if argv[:1] == ["--self-test"]:
        return self_test(header)
    files = argv or [str(p) for p in sorted((root / "bindings" / "dotnet").rglob("*.cs"))]
    sources = {f: Path(f).read_text(encoding="utf-8") for f in files}
    errors, checked, notes = lint(sources, header)
    for n in notes:
        print("note: " + n)
    for e in errors:
        print("error: " + e)
    print(f"pinvoke-lint: {checked} declaration(s) in {len(files)} file(s) checked, {len(errors)} problem(s)")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

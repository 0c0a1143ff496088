"""Judges constrained outputs written by constrained_test.cc (issue 19): every JSON
Schema case's outputs must parse as JSON and validate (the `jsonschema` package, pinned
in tests/deploy/requirements.txt, from .venv-deploy); every grammar case's outputs are
checked by an independent Python reading of the same language (regular expression,
csv, ast). Prints one line per case; exit 0 when all pass, 1 otherwise, 77 when
jsonschema is missing (skip) unless CI=true."""
import ast
import csv
import io
import json
import os
import re
import sys

try:
    import jsonschema
except ImportError:
    print("jsonschema is not installed (tests/deploy/setup_tools.sh makes .venv-deploy)")
    sys.exit(1 if os.environ.get("CI") == "true" else 77)


def arithmetic(text):
    # Numbers of 1-3 digits joined by + - * / with optional single spaces, parenthesized
    # groups allowed; Python's own parser must read it as an arithmetic expression.
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div)):
            return f"unexpected {type(node).__name__}"
        if isinstance(node, ast.Constant) and not isinstance(node.value, int):
            return "non-integer constant"
    if not re.fullmatch(r"[0-9()+\-*/ ]+", text):
        return "characters outside digits, operators, spaces and parentheses"
    return None


def csv_line(text):
    if "\n" in text or "\r" in text:
        return "more than one line"
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) != 1:
        return f"{len(rows)} rows"
    if not 3 <= len(rows[0]) <= 5:
        return f"{len(rows[0])} fields"
    return None


def date(text):
    if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])", text):
        return "not YYYY-MM-DD"
    return None


GRAMMAR_JUDGES = {"arithmetic": arithmetic, "csv": csv_line, "date": date}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    failed = 0
    for case in cases:
        bad = []
        for i, out in enumerate(case["outputs"]):
            if case["kind"] == "schema":
                try:
                    doc = json.loads(out)
                    jsonschema.validate(doc, case["schema"], cls=jsonschema.Draft202012Validator)
                    why = None
                except (json.JSONDecodeError, jsonschema.ValidationError) as e:
                    why = str(e).splitlines()[0]
            else:
                try:
                    why = GRAMMAR_JUDGES[case["name"]](out)
                except SyntaxError as e:
                    why = f"does not parse: {e}"
            if why:
                bad.append(f"  #{i} {out!r}: {why}")
        n = len(case["outputs"])
        print(f"{case['name']}: {n - len(bad)}/{n} valid")
        for line in bad:
            print(line)
        failed += bool(bad)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

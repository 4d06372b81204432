"""The values table of helm/mcpauth/README.md, generated from the "# --" comments of values.yaml.

    python3 tests/helm/values_table.py            print the table
    python3 tests/helm/values_table.py --check    fail when README.md's table differs, or when a
                                                   leaf of values.yaml is not documented

The table sits in README.md between <!-- values-table:start --> and <!-- values-table:end -->;
--write replaces it there.
"""
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "helm", "mcpauth")
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"


def documented():
    """[(dotted key, description)] in file order, from '# --' comments (continued by '#' lines)."""
    rows, stack, desc = [], [], None
    for line in open(os.path.join(CHART, "values.yaml")):
        s = line.rstrip("\n")
        m = re.match(r"^(\s*)# -- (.*)$", s)
        if m:
            desc = m.group(2)
            continue
        m = re.match(r"^(\s*)# ?(.*)$", s)
        if m and desc is not None:
            desc += " " + m.group(2)
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):", s)
        if m:
            indent = len(m.group(1))
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, m.group(2))]
            if desc is not None:
                rows.append((".".join(k for _, k in stack), desc))
            desc = None
        elif not s.strip():
            desc = None
    return rows


def table():
    values = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
    out = ["| key | default | description |", "|---|---|---|"]
    for key, desc in documented():
        v = values
        for part in key.split("."):
            v = v[part]
        default = json.dumps(v, separators=(",", ":"))
        if len(default) > 60:
            default = "see values.yaml"
        cell = desc.replace("|", "\\|")
        out.append(f"| `{key}` | `{default}` | {cell} |")
    return "\n".join(out) + "\n"


def undocumented():
    """Leaves (non-map values, or empty maps) with no documented ancestor-or-self."""
    keys = {k for k, _ in documented()}
    missing = []

    def walk(v, path):
        if any(".".join(path[:i]) in keys for i in range(1, len(path) + 1)):
            return
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(x, path + [k])
        else:
            missing.append(".".join(path))
    walk(yaml.safe_load(open(os.path.join(CHART, "values.yaml"))), [])
    return missing


def main():
    if len(sys.argv) == 1:
        print(table(), end="")
        return
    readme = os.path.join(CHART, "README.md")
    text = open(readme).read()
    a, b = text.index(START) + len(START), text.index(END)
    if "--write" in sys.argv:
        open(readme, "w").write(text[:a] + "\n" + table() + text[b:])
    elif "--check" in sys.argv:
        problems = []
        if text[a:b].strip() != table().strip():
            problems.append("helm/mcpauth/README.md's values table differs from values.yaml "
                            "(python3 tests/helm/values_table.py --write)")
        problems += [f"values.yaml: {k} has no '# --' description" for k in undocumented()]
        for p in problems:
            print(f"values-table: {p}", file=sys.stderr)
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes docs/api-reference.md from the generated CRDs in crds/yaml/ (the single source of truth).

    python3 scripts/gen-api-reference.py           # (re)write docs/api-reference.md
    python3 scripts/gen-api-reference.py --check   # exit 1 when the page is out of date

Run it after `cargo run -p lmi-crds --bin lmi-crdgen`. The chart tests (e2e/tests/chart.rs) run
`--check`, so CI fails while the page and the CRDs disagree. Needs PyYAML (Debian: python3-yaml).
"""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds" / "yaml"
OUTPUT = ROOT / "docs" / "api-reference.md"
# The order of the page: what a user writes first.
ORDER = ["CapacityProvider", "Function", "FunctionVersion", "FunctionAlias"]


def cell(text):
    """One Markdown table cell: no newlines, no stray pipes."""
    text = " ".join(str(text).split())
    return text.replace("|", "\\|")


def inline(value):
    """A value as inline code (YAML flow style, as a user would write it)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    text = text.removesuffix("...").strip()
    return "`" + text.replace("|", "\\|") + "`"


def type_of(schema):
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = schema.get("type")
    if kind == "array":
        return "[]" + type_of(schema.get("items", {}))
    if kind == "object" and "additionalProperties" in schema:
        return "map[string]" + type_of(schema["additionalProperties"])
    if kind is None and schema.get("x-kubernetes-preserve-unknown-fields"):
        return "any"
    return kind or "any"


def constraints(schema):
    """Validation keywords of one field, in words."""
    out = []
    if "enum" in schema:
        out.append("one of " + ", ".join(inline(v) for v in schema["enum"]))
    if "items" in schema and "enum" in schema["items"]:
        out.append("items one of " + ", ".join(inline(v) for v in schema["items"]["enum"]))
    for key, word in [("minimum", "min"), ("maximum", "max"), ("minLength", "min length"),
                      ("maxLength", "max length"), ("minItems", "min items"),
                      ("maxItems", "max items"), ("maxProperties", "max entries")]:
        if key in schema:
            number = schema[key]
            if isinstance(number, float) and number.is_integer():
                number = int(number)
            out.append(f"{word} {number}")
    if "pattern" in schema:
        out.append("pattern " + inline(schema["pattern"]))
    if "format" in schema:
        out.append("format " + schema["format"])
    return "; ".join(out)


def walk(schema, path, required, rows, rules):
    """Rows (path, type, required, default, constraints, description) for every field under schema."""
    for rule in schema.get("x-kubernetes-validations", []):
        rules.append((path or "(object)", rule.get("message", ""), rule["rule"]))
    props = schema.get("properties", {})
    for name in props:
        child = props[name]
        child_path = f"{path}.{name}" if path else name
        default = inline(child["default"]) if "default" in child else ""
        rows.append((child_path, type_of(child), name in required, default,
                     constraints(child), child.get("description", "")))
        walk(child, child_path, set(child.get("required", [])), rows, rules)
        items = child.get("items")
        if isinstance(items, dict) and (items.get("properties") or items.get("x-kubernetes-validations")):
            walk(items, child_path + "[]", set(items.get("required", [])), rows, rules)
        extra = child.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            walk(extra, child_path + "{}", set(extra.get("required", [])), rows, rules)


def section(crd):
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for version in spec["versions"]:
        api_version = f"{spec['group']}/{version['name']}"
        schema = version["schema"]["openAPIV3Schema"]
        out.append(f"## {names['kind']}\n")
        out.append(cell(schema.get("description", "")) + "\n")
        facts = [
            f"- apiVersion: `{api_version}`" + ("" if version.get("served", True) else " (not served)"),
            f"- scope: {spec['scope']}",
            f"- names: `{names['plural']}`, `{names['singular']}`"
            + "".join(f", `{s}`" for s in names.get("shortNames", []))
            + (f"; categories: {', '.join('`' + c + '`' for c in names.get('categories', []))}"
               if names.get("categories") else ""),
        ]
        if "status" in version.get("subresources", {}):
            facts.append("- subresources: `status`")
        columns = version.get("additionalPrinterColumns", [])
        if columns:
            facts.append("- `kubectl get` columns: " + ", ".join(
                f"{c['name']} (`{c['jsonPath']}`)" for c in columns))
        out.append("\n".join(facts) + "\n")
        for part in ["spec", "status"]:
            sub = schema.get("properties", {}).get(part)
            if sub is None:
                continue
            rows, rules = [], []
            walk(sub, part, set(sub.get("required", [])), rows, rules)
            who = "written by you" if part == "spec" else "written by the operator"
            out.append(f"### {names['kind']} `{part}` ({who})\n")
            if sub.get("description"):
                out.append(cell(sub["description"]) + "\n")
            if rows:
                out.append("| field | type | required | default | validation | description |")
                out.append("|---|---|---|---|---|---|")
                for path, kind, req, default, cons, desc in rows:
                    out.append(f"| `{path}` | {cell(kind)} | {'yes' if req else ''} | {default} | "
                               f"{cell(cons)} | {cell(desc)} |")
                out.append("")
            if rules:
                out.append(f"CEL rules on `{part}` (checked by the apiserver; the message is what "
                           "`kubectl` prints):\n")
                out.append("| on | message | rule |")
                out.append("|---|---|---|")
                for on, message, rule in rules:
                    out.append(f"| `{on}` | {cell(message)} | `{cell(rule)}` |")
                out.append("")
    return "\n".join(out)


def render():
    crds = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    crds.sort(key=lambda c: (ORDER.index(c["spec"]["names"]["kind"])
                             if c["spec"]["names"]["kind"] in ORDER else len(ORDER),
                             c["spec"]["names"]["kind"]))
    head = [
        "# API reference (`lmi.dev/v1alpha1`)",
        "",
        "<!-- Generated by `python3 scripts/gen-api-reference.py` from crds/yaml/. Do not edit. -->",
        "",
        "Generated from the CRDs, which are generated from the Rust types in `crds/src/`. What each",
        "kind means and how it maps to Lambda: [concepts](concepts.md); which fields are yours and",
        "which the operator's: [GitOps](gitops.md). Field paths use `[]` for list items and `{}` for",
        "map values.",
        "",
        "| kind | short name | scope |",
        "|---|---|---|",
    ]
    for crd in crds:
        names = crd["spec"]["names"]
        kind = names["kind"]
        head.append(f"| [{kind}](#{kind.lower()}) | `{', '.join(names.get('shortNames', []))}` | "
                    f"{crd['spec']['scope']} |")
    head.append("")
    return "\n".join(head) + "\n" + "\n".join(section(c) for c in crds).rstrip() + "\n"


def main():
    text = render()
    if "--check" in sys.argv[1:]:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python3 scripts/gen-api-reference.py",
                  file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

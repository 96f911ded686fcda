"""The configuration reference (``docs/reference/config.md``), generated from the schema."""

from __future__ import annotations

import yaml

from ._config_read import MAX_CONFIG_BYTES, MAX_YAML_VALUES
from ._schema import KINDS, SCHEMA, Setting

__all__ = ["schema_reference_markdown"]


def schema_reference_markdown() -> str:
    """The configuration reference as Markdown tables, generated from :data:`SCHEMA`."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def default(s: Setting) -> str:
        if s.key == "file_management.output_directory":
            return "`results/` beside the config"
        if s.default is None:
            return "—" if s.used else ""
        return f"`{yaml.safe_dump(s.default, default_flow_style=True).strip().removesuffix('...').strip()}`"

    def kind(s: Setting) -> str:
        if s.kind == "choice":
            return " / ".join(f"`{c}`" for c in s.choices)
        return KINDS[s.kind]

    out = [
        "# Configuration reference",
        "",
        "`python -m zipkit CONFIG.yml [OVERRIDE]` and `zipkit.run_config(path, overrides)` read the old "
        "zip_utilities YAML schema unchanged, plus zipkit's own options under a `zipkit:` section. "
        "Relative paths resolve against the config file's folder. `OVERRIDE` is a Python literal dict "
        "(`\"{'analysis': {'input_directory': '../csv/03c'}}\"`), parsed with `ast.literal_eval` and "
        "deep-merged into the config. YAML is read with a safe loader; a config file is at most "
        f"{MAX_CONFIG_BYTES} bytes (1 MiB) and holds at most {MAX_YAML_VALUES:,} values once its aliases "
        "(`*name`) are expanded. Unknown keys, wrong types, values out of range, "
        "missing folders, unsafe tags and a malformed override stop the run before any archive is "
        "written (exit code 2). `zipkit --print-config CONFIG.yml [OVERRIDE]` shows the resolved settings.",
        "",
    ]
    for title, keep in (("Old zip_utilities keys", lambda s: not s.key.startswith("zipkit.")),
                        ("`zipkit:` section", lambda s: s.key.startswith("zipkit."))):
        out += [f"## {title}", "", "| key | type | default | library argument | meaning |",
                "|---|---|---|---|---|"]
        for s in SCHEMA:
            if keep(s):
                req = " **(required)**" if s.required else ""
                arg = f"`{s.feeds}`" if s.feeds else "not used"
                out.append(f"| `{s.key}`{req} | {cell(kind(s))} | {cell(default(s))} | {arg} "
                           f"| {cell(s.help)} |")
        out.append("")
    out += [
        "Where a `zipkit:` key and an old key set the same thing (`workers`, `timeout`, `overwrite`, "
        "`progress`, `save_error_reports`), the `zipkit:` key wins when it is not null. "
        "The old tool matched marker stems as substrings anywhere in a file name; zipkit's default "
        "is the boundary-aware prefix rule, and `zipkit: {match: contains}` restores the old one.",
        "",
    ]
    return "\n".join(out)

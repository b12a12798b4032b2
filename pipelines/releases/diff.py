"""What a release changes against another (the one live in production): what
an approver reads before approving."""

import difflib
import json


def _steps_by_name(snapshot: dict | None) -> dict[str, dict]:
    return {s["name"]: s for s in (snapshot or {}).get("steps", [])}


def _lines(value) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _unified(old: list[str], new: list[str], old_name: str, new_name: str) -> list[str]:
    return list(difflib.unified_diff(old, new, old_name, new_name, lineterm=""))


def _fields(old: dict | None, new: dict | None, skip=("id", "version")) -> dict:
    old, new = old or {}, new or {}
    names = sorted((set(old) | set(new)) - set(skip))
    return {n: {"old": old.get(n), "new": new.get(n)} for n in names if old.get(n) != new.get(n)}


def release_diff(old: dict | None, new: dict) -> dict:
    """Steps added, removed, reordered or changed (prompt bodies line by line,
    model parameters, step config), and input schema and approval policy
    changes, of snapshot ``new`` against ``old`` (None: everything is new)."""
    old_steps, new_steps = _steps_by_name(old), _steps_by_name(new)
    old_order = [name for name in old_steps if name in new_steps]
    new_order = [name for name in new_steps if name in old_steps]
    changed = []
    for name in new_order:
        before, after = old_steps[name], new_steps[name]
        change = {"name": name}
        if before["kind"] != after["kind"]:
            change["kind"] = {"old": before["kind"], "new": after["kind"]}
        if before["config"] != after["config"]:
            change["config"] = _unified(_lines(before["config"]), _lines(after["config"]), "live", "candidate")
        old_prompt, new_prompt = before.get("prompt") or {}, after.get("prompt") or {}
        if old_prompt.get("body") != new_prompt.get("body") or old_prompt.get("slug") != new_prompt.get("slug"):
            change["prompt"] = _unified(
                (old_prompt.get("body") or "").splitlines(),
                (new_prompt.get("body") or "").splitlines(),
                f"live/{old_prompt.get('slug', '-')}",
                f"candidate/{new_prompt.get('slug', '-')}",
            )
        model = _fields(before.get("model"), after.get("model"))
        if model:
            change["model"] = model
        if len(change) > 1:
            changed.append(change)
    old_schema, new_schema = (old or {}).get("input_schema"), new.get("input_schema")
    return {
        "added": [name for name in new_steps if name not in old_steps],
        "removed": [name for name in old_steps if name not in new_steps],
        "reordered": old_order != new_order,
        "order": {"old": list(old_steps), "new": list(new_steps)},
        "changed": changed,
        "input_schema": []
        if old_schema == new_schema
        else _unified(_lines(old_schema), _lines(new_schema), "live", "candidate"),
        "approval_policy": _fields((old or {}).get("approval_policy"), new.get("approval_policy")),
    }

"""Reading and writing dotted paths (``customer.email``, ``items.0.sku``) in a step's document."""

MISSING = object()  # a path that leads nowhere; distinct from a JSON null


def _step(container: object, part: str) -> tuple[bool, object]:
    # A digit segment indexes a list; any segment names an object's key.
    if isinstance(container, dict):
        return True, part
    if isinstance(container, list) and part.isdigit() and int(part) < len(container):
        return True, int(part)
    return False, None


def get_path(document: object, path: str) -> object:
    """The value at ``path``, or ``MISSING``."""
    value = document
    for part in path.split("."):
        ok, key = _step(value, part)
        if not ok or (isinstance(value, dict) and key not in value):
            return MISSING
        value = value[key]
    return value


def set_path(document: dict, path: str, value: object) -> None:
    """Set ``path`` in place, creating objects on the way; raise ValueError when
    a part of the way is already something that cannot hold the next part."""
    parts = path.split(".")
    target: object = document
    for depth, part in enumerate(parts):
        ok, key = _step(target, part)
        if not ok:
            raise ValueError(f"{'.'.join(parts[:depth])!r} is not an object")
        if depth == len(parts) - 1:
            target[key] = value
            return
        if isinstance(target, dict) and key not in target:
            target[key] = {}
        target = target[key]

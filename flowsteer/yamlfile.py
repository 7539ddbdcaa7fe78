"""YAML and JSON input files (run configs, sweep files, ``--hp`` values), read strictly.

PyYAML lets a repeated key silently replace the first (two ``bc:`` entries in a sweep file: the second wins) and
raises tracebacks for files that are not text. Here a repeated key is an error, and every failure is a
YamlInputError whose message names the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlInputError(ValueError):
    """An input file or value is not the YAML it should be; the message names it."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a repeated key."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key; construct_mapping reports it
            repeated = False
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )  # fmt: skip
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, where: str) -> Any:
    """The value of YAML ``text``; YamlInputError naming ``where`` when it does not parse."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise YamlInputError(f"{where} is not valid YAML: {detail}") from None


def read_yaml(path: Path, what: str) -> Any:
    """The YAML (or JSON) value in ``path``; YamlInputError when it cannot be read or parsed."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise YamlInputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlInputError(
            f"{what} {path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); save it as UTF-8."
        ) from None
    return parse_yaml(text, f"{what} {path}")

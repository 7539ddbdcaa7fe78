"""The base-policy file format (docs/base-policies.md): the metadata a policy file declares, checked, without torch.

Two loadable forms carry the same metadata: a TorchScript archive holding it as the extra file `flowsteer.json`,
and a manifest (YAML or JSON) that adds an entry point `package.module:factory`, its `kwargs` and a `state_dict`
file. The writer (flowsteer.policies.ddpm) and the loader (flowsteer.policies.torch_policy) both go through the
models here, so what one writes the other reads.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from flowsteer.policies.interface import BasePolicyError
from flowsteer.validation import InputModel, first_error

FORMAT = "flowsteer-base-policy"
VERSION = 1
METADATA_FILE = "flowsteer.json"  # the TorchScript archive's extra file that holds the metadata


class ObservationNormalization(InputModel):
    """The policy's network sees (observation - mean) / std; the loader applies it before decoding."""

    label: ClassVar[str] = "observation_normalization field"
    mean: list[float] = Field(min_length=1)
    std: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _positive_std(self) -> ObservationNormalization:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values and std {len(self.std)}; give one per dimension")
        if min(self.std) <= 0:
            raise ValueError("std must be > 0 in every dimension (floor it when the data is constant)")
        return self


class ActionNormalization(InputModel):
    """The network's actions in [-1, 1] map to low + (a + 1) / 2 · (high - low), per action dimension."""

    label: ClassVar[str] = "action_normalization field"
    low: list[float] = Field(min_length=1)
    high: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ActionNormalization:
        if len(self.low) != len(self.high):
            raise ValueError(f"low has {len(self.low)} values and high {len(self.high)}; give one per dimension")
        if any(lo >= hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError("low must be below high in every dimension")
        return self


class PolicyMetadata(InputModel):
    """What a base-policy file declares about its module (docs/base-policies.md#metadata)."""

    label: ClassVar[str] = "metadata field"
    format: Literal["flowsteer-base-policy"]
    version: Literal[1]
    framework: Literal["torch"]
    obs_dim: int = Field(ge=1)
    act_dim: int = Field(ge=1)
    action_chunk: int = Field(ge=1)
    sampler: str
    sampler_steps: int = Field(ge=1)
    observation_normalization: ObservationNormalization | None = None
    action_normalization: ActionNormalization | None = None
    trained: dict[str, Any] | None = None  # how the policy was made (task, steps, seed, ...): provenance only

    @model_validator(mode="after")
    def _normalizations_fit(self) -> PolicyMetadata:
        if self.observation_normalization and len(self.observation_normalization.mean) != self.obs_dim:
            raise ValueError(
                f"observation_normalization has {len(self.observation_normalization.mean)} values, obs_dim is "
                f"{self.obs_dim}"
            )
        if self.action_normalization and len(self.action_normalization.low) != self.act_dim:
            raise ValueError(
                f"action_normalization has {len(self.action_normalization.low)} values, act_dim is {self.act_dim}"
            )
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)


class PolicyManifest(PolicyMetadata):
    """The second loadable form: a module built by an importable factory, its weights in a state-dict file."""

    label: ClassVar[str] = "manifest field"
    entry_point: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # package.module:factory
    kwargs: dict[str, Any] = Field(default_factory=dict)
    state_dict: str = Field(min_length=1)  # path relative to the manifest's directory

    def metadata(self) -> PolicyMetadata:
        fields = self.model_dump(exclude={"entry_point", "kwargs", "state_dict"})
        return PolicyMetadata.model_validate(fields)


def parse_metadata(raw: Any, where: str) -> PolicyMetadata:
    """`raw` (the text of flowsteer.json) as checked metadata; BasePolicyError naming the problem and the fix."""
    try:
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BasePolicyError(
            f"{where}: {METADATA_FILE} is not valid JSON ({exc}). Write it as the format says "
            "(docs/base-policies.md), e.g. with `flowsteer base-policy train`."
        ) from None
    return _validated(PolicyMetadata, values, where)


def parse_manifest(values: Any, where: str) -> PolicyManifest:
    """A manifest's parsed YAML/JSON value as a checked PolicyManifest."""
    return _validated(PolicyManifest, values, where)


def _validated(model: type[PolicyMetadata], values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise BasePolicyError(f"{where}: expected a mapping of metadata fields, got {type(values).__name__}.")
    missing = [name for name, field in model.model_fields.items() if field.is_required() and name not in values]
    if missing:
        raise BasePolicyError(
            f"{where}: the metadata lacks {', '.join(missing)}. Declare every field of the format "
            "(docs/base-policies.md#metadata)."
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise BasePolicyError(
            f"{where}: invalid metadata: {first_error(exc, model)} See docs/base-policies.md#metadata."
        ) from None

"""Silent substitution: the server uses another value than the client asked for.

A real webui does this too (v1.10's unknown sampler becomes "DPM++ 2M", an unknown checkpoint
the loaded one); tests of sdbatch's post-check need it for any field. The substituted value is
what the image, `info` and the infotext report; the `parameters` echo keeps the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdbatch.standin.a1111.catalog import Checkpoint

if TYPE_CHECKING:
    from sdbatch.standin.a1111.behaviours import Behaviour

# Request fields that can be substituted, with how to read the value from the CLI's text.
FIELDS: dict[str, Callable[[str], Any]] = {
    "sampler_name": str,
    "scheduler": str,
    "sd_model_checkpoint": str,
    "steps": int,
    "cfg_scale": float,
    "width": int,
    "height": int,
}


@dataclass(frozen=True)
class Substitution:
    values: Mapping[str, Any]  # request field -> value, already typed and mapped
    checkpoint: Checkpoint | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], behaviour: Behaviour) -> Substitution:
        """Check and type `raw` (FIELD -> value) for `behaviour`; ValueError when unusable."""
        values: dict[str, Any] = {}
        checkpoint = None
        for key, value in raw.items():
            if key not in FIELDS:
                raise ValueError(
                    f"cannot substitute {key!r}; choose from {', '.join(sorted(FIELDS))}"
                )
            try:
                typed = FIELDS[key](value)
            except (TypeError, ValueError):
                raise ValueError(f"bad value for substituted {key}: {value!r}") from None
            if key == "sd_model_checkpoint":
                checkpoint = behaviour.catalog.checkpoint(typed)
                if checkpoint is None:
                    raise ValueError(f"substituted checkpoint {typed!r} is not installed")
            elif key == "scheduler":
                # The schedule's request field differs per webui (SD.Next: schedulers_sigma).
                if behaviour.schedule_field is None:
                    raise ValueError(f"{behaviour.name} has no scheduler field to substitute")
                values[behaviour.schedule_field] = typed
            else:
                values[key] = typed
        return cls(values, checkpoint)

    def request(self, req: Mapping[str, Any]) -> Mapping[str, Any]:
        return {**req, **self.values} if self.values else req

    def model(self, checkpoint: Checkpoint) -> Checkpoint:
        return self.checkpoint or checkpoint

    def as_json(self) -> dict[str, Any]:
        out = dict(self.values)
        if self.checkpoint is not None:
            out["sd_model_checkpoint"] = self.checkpoint.title
        return out

"""The txt2img request models: the A1111 v1.10.1 field table and each webui's variant of it.

Names, kinds, defaults and nullability live here, with the walk over them that both pydantic
flavours share (`Coercion`); model.py (pydantic v1) and pydantic2.py (v2) supply only what
differs between them: how each `kind` coerces and how an error item reads.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from sdbatch.standin.a1111.errors import ApiError

T = TypeVar("T")
E = TypeVar("E", bound=Exception)
Item = dict[str, Any]  # one entry of a 422's `detail`


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # one of KINDS
    default: Any
    nullable: bool = True  # dataclass-derived fields are Optional[...]


KINDS = ("int", "float", "bool", "str", "str_list", "list", "dict")


def by_kind(
    int_: T, float_: T, bool_: T, str_: T, str_list: T, list_: T, dict_: T
) -> Mapping[str, T]:
    """A table with one entry per field kind, in KINDS order.

    Positional and complete on purpose: a flavour that forgets a kind fails the type check
    instead of raising KeyError on the first request that uses it.
    """
    return dict(zip(KINDS, (int_, float_, bool_, str_, str_list, list_, dict_), strict=True))


@dataclass(frozen=True)
class Coercion(Generic[E]):
    """A pydantic flavour's pieces: the coercion per kind (raising `invalid`), the item for a
    forbidden null, and the item built from an `invalid` raised for a value.

    pydantic v1 and v2 walk a model the same way (`validate`) and differ only in these, so
    model.py and pydantic2.py each hold one instance instead of a copy of the walk.
    """

    coerce: Mapping[str, Callable[[Any], Any]]
    invalid: type[E]
    null_item: Callable[[Field], Item]
    invalid_item: Callable[[Field, Any, E], Item]

    def validate(self, data: Mapping[str, Any], fields: tuple[Field, ...]) -> dict[str, Any]:
        """Every field of `fields`, in model order: its default when absent, None when null
        and allowed, else the coerced value; or a 422 with all the errors (both flavours
        collect rather than stop at the first, so a client sees every bad field at once)."""
        values: dict[str, Any] = {}
        errors: list[Item] = []
        for f in fields:
            if f.name not in data:
                values[f.name] = copy.deepcopy(f.default)  # mutable defaults stay unshared
                continue
            value = data[f.name]
            if value is None:
                if f.nullable:
                    values[f.name] = None
                else:
                    errors.append(self.null_item(f))
                continue
            try:
                values[f.name] = self.coerce[f.kind](value)
            except self.invalid as exc:
                errors.append(self.invalid_item(f, value, exc))
        if errors:
            raise ApiError(422, {"detail": errors})
        return values


def _f(name: str, kind: str, default: Any, nullable: bool = True) -> Field:
    return Field(name, kind, default, nullable)


# Model order of StableDiffusionTxt2ImgProcessingAPI at v1.10.1 (a1111-api.md §1); `parameters`
# in the response echoes the request in this order.
FIELDS: tuple[Field, ...] = (
    _f("prompt", "str", ""),
    _f("negative_prompt", "str", ""),
    _f("styles", "str_list", None),
    _f("seed", "int", -1),
    _f("subseed", "int", -1),
    _f("subseed_strength", "float", 0),
    _f("seed_resize_from_h", "int", -1),
    _f("seed_resize_from_w", "int", -1),
    _f("sampler_name", "str", None),
    _f("scheduler", "str", None),
    _f("batch_size", "int", 1),
    _f("n_iter", "int", 1),
    _f("steps", "int", 50),
    _f("cfg_scale", "float", 7.0),
    _f("width", "int", 512),
    _f("height", "int", 512),
    _f("restore_faces", "bool", None),
    _f("tiling", "bool", None),
    _f("do_not_save_samples", "bool", False),
    _f("do_not_save_grid", "bool", False),
    _f("eta", "float", None),
    _f("denoising_strength", "float", None),
    _f("s_min_uncond", "float", None),
    _f("s_churn", "float", None),
    _f("s_tmax", "float", None),
    _f("s_tmin", "float", None),
    _f("s_noise", "float", None),
    _f("override_settings", "dict", None),
    _f("override_settings_restore_afterwards", "bool", True),
    _f("refiner_checkpoint", "str", None),
    _f("refiner_switch_at", "float", None),
    _f("disable_extra_networks", "bool", False),
    _f("firstpass_image", "str", None),
    _f("comments", "dict", None),
    _f("enable_hr", "bool", False),
    _f("firstphase_width", "int", 0),
    _f("firstphase_height", "int", 0),
    _f("hr_scale", "float", 2.0),
    _f("hr_upscaler", "str", None),
    _f("hr_second_pass_steps", "int", 0),
    _f("hr_resize_x", "int", 0),
    _f("hr_resize_y", "int", 0),
    _f("hr_checkpoint_name", "str", None),
    _f("hr_sampler_name", "str", None),
    _f("hr_scheduler", "str", None),
    _f("hr_prompt", "str", ""),
    _f("hr_negative_prompt", "str", ""),
    _f("force_task_id", "str", None),
    # API-only additions: the ones with a non-None default reject null.
    _f("sampler_index", "str", "Euler", nullable=False),
    _f("script_name", "str", None),
    _f("script_args", "list", [], nullable=False),
    _f("send_images", "bool", True, nullable=False),
    _f("save_images", "bool", False, nullable=False),
    _f("alwayson_scripts", "dict", {}, nullable=False),
    _f("infotext", "str", None),
)


def tailor(
    base: tuple[Field, ...],
    *,
    drop: frozenset[str] = frozenset(),
    defaults: Mapping[str, Any] | None = None,
    after: Mapping[str, tuple[Field, ...]] | None = None,
) -> tuple[Field, ...]:
    """`base` without `drop`, with other defaults, and with new fields inserted after a field."""
    out: list[Field] = []
    for f in base:
        if f.name not in drop:
            out.append(replace(f, default=(defaults or {}).get(f.name, f.default)))
        out.extend((after or {}).get(f.name, ()))
    return tuple(out)


# v1.8.0: no `scheduler`/`hr_scheduler` yet (a1111-api.md §1 "When fields appeared").
FIELDS_V18 = tailor(FIELDS, drop=frozenset({"scheduler", "hr_scheduler"}))

# Forge adds Flux/hires fields to the processing dataclass (§8). Their position in the model is
# not documented; we put them after the A1111 field they belong with.
FIELDS_FORGE = tailor(
    FIELDS,
    after={
        "cfg_scale": (_f("distilled_cfg_scale", "float", 3.5),),
        "hr_negative_prompt": (
            _f("hr_cfg", "float", 1.0),
            _f("hr_distilled_cfg", "float", 3.5),
            _f("hr_additional_modules", "list", None),
        ),
    },
)

# SD.Next (ReqTxt2Img from processing_class.StableDiffusionProcessing): other defaults, no
# `scheduler` (the sigma schedule is `schedulers_sigma`), `sampler_index` an int. Only the
# fields a client of this mock needs are modelled; SD.Next ignores unknown keys anyway.
FIELDS_SDNEXT = tailor(
    FIELDS,
    drop=frozenset({"scheduler", "hr_scheduler", "sampler_index"}),
    defaults={
        "steps": 20,
        "width": 1024,
        "height": 1024,
        "cfg_scale": 6.0,
        "denoising_strength": 0.3,
        "sampler_name": "Default",
    },
    after={
        "sampler_name": (
            _f("sampler_index", "int", 0),
            _f("schedulers_sigma", "str", None),
        ),
        "cfg_scale": (_f("cfg_end", "float", 1.0), _f("clip_skip", "int", 1)),
    },
)

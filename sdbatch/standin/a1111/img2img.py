"""`POST /sdapi/v1/img2img`: what it adds to txt2img, as the real v1.10.1 answered it
(tests/data/real-a1111, `own/img2img_*`; a1111-img2img-and-extra-networks.md A).

Here: the request model's delta, the decoding of `init_images` and `mask` with the real error
answers, and what the pictures change in a job (the batch, the infotext's denoising and mask
keys, the steps sampled). Everything else — faults, queue lock, overrides, seeds, infotext,
`info`, the answer — is txt2img's (routes.txt2img, webui.py, generation.py, output.py).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from sdbatch.standin.a1111 import model
from sdbatch.standin.a1111.errors import http_exception, webui_exception
from sdbatch.standin.a1111.fields import Field, tailor
from sdbatch.standin.a1111.generation import Job
from sdbatch.standin.a1111.host import Host

PATH = "/sdapi/v1/img2img"

# Where the model has them: after `comments`, in the place txt2img's hires fields hold.
_PICTURE_FIELDS = (
    Field("init_images", "list", None),
    Field("resize_mode", "int", 0),
    Field("image_cfg_scale", "float", None),
    Field("mask", "str", None),
    Field("mask_blur_x", "int", 4),
    Field("mask_blur_y", "int", 4),
    Field("mask_blur", "int", None),
    Field("mask_round", "bool", True),
    Field("inpainting_fill", "int", 0),
    Field("inpaint_full_res", "bool", True),
    Field("inpaint_full_res_padding", "int", 0),
    Field("inpainting_mask_invert", "int", 0),
    Field("initial_noise_multiplier", "float", None),
    Field("latent_mask", "str", None),
)
# API-level fields with a default: null is a 422 (own/img2img_null_denoise).
_DENOISING = Field("denoising_strength", "float", 0.75, nullable=False)
_INCLUDE = Field("include_init_images", "bool", False, nullable=False)
# inpainting_fill -> "Masked content"; 1 ("original") records nothing.
_CONTENT = {0: "fill", 2: "latent noise", 3: "latent nothing"}


def fields_for(txt2img: tuple[Field, ...]) -> tuple[Field, ...]:
    """The img2img model from a webui's txt2img one: no hires fields, the picture fields after
    `comments`, denoising 0.75 instead of null, and `include_init_images`."""
    hires = {
        f.name
        for f in txt2img
        if f.name == "enable_hr" or f.name.startswith(("hr_", "firstphase_"))
    }
    return tailor(
        txt2img,
        drop=frozenset({*hires, "denoising_strength"}),
        after={"eta": (_DENOISING,), "comments": _PICTURE_FIELDS, "sampler_index": (_INCLUDE,)},
    )


def decode(value: Any) -> Image.Image:
    """decode_base64_to_image: plain base64 or a `data:image/…;base64,` URL, opened lazily (a
    truncated file passes here and fails when read, in `Init.adapt`)."""
    if not isinstance(value, str):  # the webui asks the item for .startswith
        name = type(value).__name__
        raise webui_exception("AttributeError", f"'{name}' object has no attribute 'startswith'")
    if value.startswith(("http://", "https://")):
        # The stand-in fetches nothing. The real one refuses every local address (an option the
        # API cannot change; own/img2img_url_local), and a test's pictures are served locally.
        raise http_exception(500, "Request to local resource not allowed")
    if value.startswith("data:image/"):
        try:  # the payload after the comma of the second `;` part; other shapes fail
            value = value.split(";")[1].split(",")[1]
        except IndexError:
            raise webui_exception("IndexError", "list index out of range") from None
    try:
        return Image.open(io.BytesIO(base64.b64decode(value)))
    except Exception:  # whatever the decoding raises, the webui answers the same
        raise http_exception(500, "Invalid encoded image") from None


@dataclass(frozen=True)
class Init:
    """An img2img request's pictures, decoded inside the queue lock (a bad one is reported only
    after the request has waited its turn), and what they change in its job."""

    req: Mapping[str, Any]
    pictures: tuple[Image.Image, ...]
    mask: Image.Image | None

    @classmethod
    def of(cls, req: Mapping[str, Any]) -> Init | None:
        """None for a txt2img request: only img2img's model has `init_images`."""
        if "init_images" not in req:
            return None
        pictures = tuple(decode(item) for item in req["init_images"])
        return cls(req, pictures, decode(req["mask"]) if req["mask"] else None)

    @property
    def steps(self) -> int:
        """What the sampler runs, as /progress counts it: the denoised share of the steps, +1."""
        strength = min(self.req["denoising_strength"], 0.999)
        return max(0, int(strength * max(0, self.req["steps"] or 0))) + 1

    def adapt(self, job: Job) -> Job:
        """The job as the pictures make it: read in full (a truncated one fails now), one
        picture for the whole batch or one per slot, and the denoising and mask keys first in
        extra_generation_params. `all_seeds` keeps the requested batch's count
        (own/img2img_two_images_batch3: 2 images, 3 seeds)."""
        for picture in (*self.pictures, *((self.mask,) if self.mask else ())):
            try:
                picture.load()
            except OSError as exc:
                raise webui_exception("OSError", str(exc)) from None
        wanted, count = max(1, job.req["batch_size"] or 1), len(self.pictures)
        if count > wanted:
            message = f"bad number of images passed: {count}; expecting {wanted} or less"
            raise webui_exception("RuntimeError", message)
        if count == 0:  # the empty batch reaches the VAE (own/img2img_init_empty)
            message = "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of "
            raise webui_exception("RuntimeError", message + "size: [0]")
        batch = wanted if count == 1 else count
        extra = {**self._params(), **job.extra}
        return replace(job, req={**job.req, "batch_size": batch}, extra=extra)

    def _params(self) -> dict[str, Any]:
        req = self.req
        params: dict[str, Any] = {"Denoising strength": req["denoising_strength"]}
        if self.mask is None:
            return params
        if req["inpainting_mask_invert"]:
            params["Mask mode"] = "Inpaint not masked"
        blur = req["mask_blur"]  # sets both when given
        x, y = (blur, blur) if blur is not None else (req["mask_blur_x"], req["mask_blur_y"])
        params["Mask blur"] = x if x == y else None  # in `info` as null, not in the infotext
        if req["inpaint_full_res"]:
            params["Inpaint area"] = "Only masked"
            params["Masked area padding"] = req["inpaint_full_res_padding"]
        if req["inpainting_fill"] in _CONTENT:
            params["Masked content"] = _CONTENT[req["inpainting_fill"]]
        return params


def generate(webui: Host, body: Any) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Api.img2imgapi before the queue — the img2img model, a 404 without pictures, the mask
    decoded at once — then txt2img's job, and the echo without the pictures unless asked."""
    b = webui.behaviour
    req = model.validate(body, fields_for(b.fields), b.pydantic_v2)
    if req["init_images"] is None:
        raise http_exception(404, "Init image not found")
    if req["mask"]:  # "" is no mask
        decode(req["mask"])
    response, seeds = webui.txt2img(req)
    if not req["include_init_images"]:
        response["parameters"].update(init_images=None, mask=None)
    return response, seeds

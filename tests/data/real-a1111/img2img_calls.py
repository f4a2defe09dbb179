"""The img2img calls `trim.py --record URL` makes (own/img2img_*): sizes, resize modes, masks,
batches and the decoding errors. Every picture is 64x64 (65x64 once), made here with Pillow and
small enough to keep in the stored request."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, ImageDraw

PNG_URL = "data:image/png;base64,"


def picture(width: int, height: int, mode: str = "RGB") -> str:
    """A small PNG as plain base64: a disc on a flat ground (white on black for a mask)."""
    ground, disc = (0, 255) if mode == "L" else ((200, 30, 30), (20, 120, 220))
    img = Image.new(mode, (width, height), ground)
    ImageDraw.Draw(img).ellipse((8, 8, width - 8, height - 8), fill=disc)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def calls(url: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, JSON body) of each call; `url` is the webui's own, for a local picture URL."""
    square, wide = picture(64, 64), picture(65, 64)
    base = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 1}
    small = {**base, "init_images": [square]}
    bad = base64.b64encode(b"this is no picture").decode("ascii")
    return [
        ("plain_b64", {**small, "denoising_strength": 0.3, "sampler_name": "Euler"}),
        ("data_url_default_denoise", {**small, "seed": -1, "init_images": [PNG_URL + square]}),
        ("no_size_65x64", {"prompt": "a cat", "steps": 2, "seed": 2, "init_images": [wide]}),
        ("size_differs", {**small, "width": 128, "height": 72}),
        *((f"resize_mode_{m}", {**small, "width": 96, "resize_mode": m}) for m in (1, 2, 3)),
        ("init_missing", base),
        ("init_null", {**base, "init_images": None}),
        ("init_empty", {**base, "init_images": []}),
        ("garbage_b64", {**base, "init_images": ["%%% not base64 %%%"]}),
        ("not_an_image", {**base, "init_images": [bad]}),
        ("truncated", {**base, "init_images": [square[: len(square) // 2 // 4 * 4]]}),
        ("not_a_string", {**base, "init_images": [5]}),
        ("url_local", {**base, "init_images": [f"{url}/favicon.png"]}),
        ("data_url_extra_param", {**base, "init_images": [PNG_URL.replace(";", ";x=1;") + square]}),
        ("bad_mask", {**small, "mask": bad}),
        ("mask", {**small, "mask": picture(64, 64, "L")}),
        (
            "mask_original_whole_inverted",
            {
                **small,
                "mask": picture(64, 64, "L"),
                "inpainting_fill": 1,
                "inpaint_full_res": False,
                "mask_blur": 2,
                "inpainting_mask_invert": 1,
            },
        ),
        (
            "mask_latent_noise_blur_xy",
            {
                **small,
                "mask": picture(64, 64, "L"),
                "inpainting_fill": 2,
                "mask_blur_x": 3,
                "mask_blur_y": 5,
                "inpaint_full_res_padding": 8,
                "include_init_images": True,
            },
        ),
        ("batch2", {**small, "batch_size": 2}),
        ("two_images_batch1", {**small, "init_images": [square, wide]}),
        ("two_images_batch3", {**small, "init_images": [square, wide], "batch_size": 3}),
        ("include_init_images", {**small, "include_init_images": True}),
        ("null_denoise", {**small, "denoising_strength": None, "include_init_images": None}),
    ]

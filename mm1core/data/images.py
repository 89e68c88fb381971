"""Any image of a document as ``(R, R, 3)`` uint8 RGB pixels (numpy and Pillow; no torch).

A world ``Scene`` is rendered at ``R`` directly. A user's ``EncodedImage`` (JPEG/PNG/WebP/... bytes) is decoded,
turned upright by its EXIF orientation, converted to RGB (transparency composited on white), then resized so
that its *shorter* side is ``R`` (bicubic) and center-cropped to ``R x R``. MM1 feeds the encoder square images
(Sec. 3.2: 224 or 336 px, then 378 px); cropping rather than squashing keeps the shapes' aspect ratios, at the
cost of the borders of long images.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mm1core.data.records import BadRecord, EncodedImage, ImageLike
from mm1core.data.world import Scene, render

WHITE = (255, 255, 255)


def to_pixels(image: ImageLike, resolution: int) -> np.ndarray:
    """The image as ``(resolution, resolution, 3)`` uint8 RGB (see the module docstring).

    Raises ``BadRecord`` (``"<origin>: <reason>"``) when encoded bytes cannot be decoded: a truncated file,
    bytes that are no image, an image of zero size.
    """
    if isinstance(image, EncodedImage):
        return _resize_and_crop(decode(image, resolution), resolution)
    if isinstance(image, Scene):
        return render(image, resolution)
    raise TypeError(f"not an image: {type(image).__name__}")


def decode(image: EncodedImage, resolution: int | None = None) -> Image.Image:
    """The upright RGB picture in ``image``'s bytes; ``resolution`` lets JPEG decode at a reduced scale.

    Pillow raises many kinds of exceptions on bad input (``OSError``, ``SyntaxError``, ``ValueError``,
    ``DecompressionBombError``...), so any of them becomes a ``BadRecord``: one unreadable file must never
    stop a trial.
    """
    try:
        picture = Image.open(io.BytesIO(image.data))
        if resolution is not None:
            picture.draft("RGB", (resolution, resolution))  # JPEG: decode at 1/2..1/8 scale, never below R
        picture.load()  # Image.open is lazy: truncation shows up here
        picture = ImageOps.exif_transpose(picture)
        if picture.width == 0 or picture.height == 0:
            raise ValueError(f"zero size ({picture.width}x{picture.height})")
        return _rgb(picture)
    except UnidentifiedImageError as error:  # its message names the BytesIO object, not the file
        raise BadRecord(f"{image.origin}: not an image (or in a format Pillow cannot read)") from error
    except Exception as error:  # any other decoder failure: see the docstring
        raise BadRecord(f"{image.origin}: cannot decode the image ({type(error).__name__}: {error})") from error


def _rgb(picture: Image.Image) -> Image.Image:
    """Any mode as RGB; transparent pixels become white rather than whatever colour they hide."""
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return picture.convert("RGB")


def _resize_and_crop(picture: Image.Image, resolution: int) -> np.ndarray:
    """Shorter side to ``resolution`` (bicubic), then the central ``resolution x resolution`` square."""
    scale = resolution / min(picture.width, picture.height)
    width = max(resolution, round(picture.width * scale))
    height = max(resolution, round(picture.height * scale))
    resized = picture.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - resolution) // 2, (height - resolution) // 2
    cropped = resized.crop((left, top, left + resolution, top + resolution))
    return np.asarray(cropped, dtype=np.uint8)  # (R, R, 3)

"""Images as pixels: world scenes rendered, encoded files decoded, made RGB, resized and center-cropped."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mm1core.data import world
from mm1core.data.images import to_pixels
from mm1core.data.records import BadRecord, EncodedImage

RED, BLUE = (220, 30, 30), (30, 30, 220)


def encoded(picture: Image.Image, image_format: str, origin: str = "test.img", **options: object) -> EncodedImage:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return EncodedImage(buffer.getvalue(), origin)


@pytest.fixture
def scene() -> world.Scene:
    return world.sample_scene(np.random.default_rng(3))


def test_a_scene_is_rendered(scene: world.Scene) -> None:
    np.testing.assert_array_equal(to_pixels(scene, 32), world.render(scene, 32))


def test_png_of_the_same_size_decodes_exactly(scene: world.Scene) -> None:
    pixels = world.render(scene, 32)
    decoded = to_pixels(encoded(Image.fromarray(pixels), "PNG"), 32)
    assert decoded.dtype == np.uint8 and decoded.shape == (32, 32, 3)
    np.testing.assert_array_equal(decoded, pixels)


def test_jpeg_is_resized_to_the_resolution(scene: world.Scene) -> None:
    jpeg = encoded(Image.fromarray(world.render(scene, 128)), "JPEG", quality=95)
    decoded = to_pixels(jpeg, 64)
    assert decoded.shape == (64, 64, 3)
    assert np.abs(decoded.astype(int) - world.render(scene, 64).astype(int)).mean() < 6


@pytest.mark.parametrize("size", [(120, 40), (40, 120)], ids=["wide", "tall"])
def test_shorter_side_is_resized_then_the_centre_cropped(size: tuple[int, int]) -> None:
    picture = Image.new("RGB", size, BLUE)  # blue borders along the long side, a red centre square
    width, height = size
    side = min(size)
    picture.paste(RED, ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2))
    pixels = to_pixels(encoded(picture, "PNG"), 20)
    assert pixels.shape == (20, 20, 3)
    np.testing.assert_allclose(pixels[2:-2, 2:-2].reshape(-1, 3).mean(0), RED, atol=2)


def test_transparent_pixels_become_white() -> None:
    picture = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    picture.paste((*RED, 255), (0, 0, 8, 16))
    pixels = to_pixels(encoded(picture, "PNG"), 16)
    np.testing.assert_array_equal(pixels[:, :8], np.full((16, 8, 3), RED, dtype=np.uint8))
    np.testing.assert_array_equal(pixels[:, 8:], np.full((16, 8, 3), 255, dtype=np.uint8))


@pytest.mark.parametrize("mode", ["L", "P", "CMYK"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    picture = Image.new("RGB", (16, 16), RED).convert(mode)
    image_format = "JPEG" if mode == "CMYK" else "PNG"
    pixels = to_pixels(encoded(picture, image_format), 16)
    assert pixels.shape == (16, 16, 3)
    expected = np.asarray(picture.convert("RGB"))[0, 0]
    np.testing.assert_allclose(pixels[8, 8], expected, atol=8)
    if mode == "L":
        assert (pixels[..., 0] == pixels[..., 2]).all()


def test_exif_orientation_is_applied() -> None:
    picture = Image.new("RGB", (64, 32), BLUE)
    picture.paste(RED, (0, 0, 32, 32))  # red left half; orientation 6 shows it rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = to_pixels(encoded(picture, "JPEG", exif=exif.tobytes(), quality=95), 32).astype(int)
    np.testing.assert_allclose(pixels[4, 16], RED, atol=12)  # red is now on top
    np.testing.assert_allclose(pixels[28, 16], BLUE, atol=12)


def jpeg_bytes() -> bytes:
    return encoded(Image.new("RGB", (64, 64), RED), "JPEG").data


@pytest.mark.parametrize(
    "data",
    [jpeg_bytes()[: len(jpeg_bytes()) // 2], b"this is not an image", b"", jpeg_bytes()[:20]],
    ids=["truncated-jpeg", "text", "empty", "header-only"],
)
def test_undecodable_bytes_raise_bad_record_naming_the_origin(data: bytes) -> None:
    with pytest.raises(BadRecord, match=r"^shard-00000\.tar:0001\.jpg: "):
        to_pixels(EncodedImage(data, "shard-00000.tar:0001.jpg"), 32)


def test_other_objects_are_no_images() -> None:
    with pytest.raises(TypeError, match="not an image"):
        to_pixels(np.zeros((4, 4, 3), np.uint8), 4)  # type: ignore[arg-type]

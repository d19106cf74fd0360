"""The memory decoding an image takes, estimated from its header before any pixel is decoded, and checked."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.imaging import ImageTooLargeError, check_decode_cost, decode_cost, stored_bytes_per_pixel

REPO = Path(__file__).resolve().parents[2]


def png(mode: str, width: int, height: int) -> bytes:
    if mode in ("I;16", "I;16B"):
        image = Image.fromarray((np.arange(width * height) % 65536).astype(np.uint16).reshape(height, width))
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        pixels = (np.arange(width * height * bands) % 251).astype(np.uint8).reshape(height, width, bands)
        image = Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("mode", "decoded_per_pixel", "peak_per_pixel"), [
    ("L", 1, 1 + 4),  # 8-bit grey, then its RGB copy
    ("RGB", 4, 4),  # Pillow keeps 3 bands in 4 bytes; already RGB: no copy
    ("RGBA", 4, 4 + 4 + 4),  # the white background and the composite
    ("LA", 4, 4 + 4 + 4 + 4),  # its RGBA copy too
    ("I;16", 2, 2 + 4),  # 16 bits a sample, then the RGB copy
])
def test_the_estimate_from_the_header_counts_bands_and_bytes_per_sample(mode, decoded_per_pixel, peak_per_pixel):
    image = Image.open(io.BytesIO(png(mode, 300, 200)))
    cost = decode_cost(image)
    assert (cost.width, cost.height, cost.mode) == (300, 200, mode)
    assert cost.decoded_bytes == 300 * 200 * decoded_per_pixel
    assert cost.peak_bytes == 300 * 200 * peak_per_pixel * 11 // 10
    assert stored_bytes_per_pixel(mode) == decoded_per_pixel


def test_sixteen_bit_samples_count_two_bytes_and_above_the_limit_is_a_413_naming_both():
    cost = decode_cost(Image.open(io.BytesIO(png("I;16", 6300, 6300))))
    assert cost.decoded_bytes == 6300 * 6300 * 2
    with pytest.raises(ImageTooLargeError) as refused:
        check_decode_cost(cost, 128 * 2**20)
    message = str(refused.value)
    assert refused.value.status_code == 413
    assert "6300 × 6300 pixels of mode I;16" in message and "250 MiB" in message and "limit is 128 MiB" in message
    check_decode_cost(cost, 256 * 2**20)  # fits under 256 MiB


MEASURE = textwrap.dedent("""
    import sys
    from app.imaging import prepare_image
    from engine.models.bundle import Preprocessing

    def high_water():  # VmHWM: this process's peak resident memory (ru_maxrss would keep the parent's across exec)
        line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    data = open(sys.argv[1], "rb").read()
    before = high_water()
    prepare_image(data, Preprocessing(resize=256, crop=224, mean=(0.5,) * 3, std=(0.25,) * 3), 10**9, 10**9)
    print(high_water() - before)
""")

@pytest.mark.parametrize(("mode", "side"), [("I;16", 6300), ("RGBA", 3000), ("RGB", 4000)])
def test_the_estimate_covers_the_measured_peak_and_16_bit_no_longer_takes_12_bytes_a_pixel(tmp_path, mode, side):
    """Decoded in a fresh process: the peak resident memory grows by no more than the estimate (and not much
    less). A 6300 × 6300 16-bit PNG took 455 MiB (12 bytes a pixel) before; now about 230 MiB."""
    path = tmp_path / "image.png"
    path.write_bytes(png(mode, side, side))
    estimate = decode_cost(Image.open(path)).peak_bytes
    measured = int(subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                                  check=True, cwd=REPO).stdout)
    print(f"{mode} {side}×{side}: measured peak {measured / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB")
    assert 0.6 * estimate < measured <= 1.05 * estimate  # within 5%: the allocator rounds
    if mode == "I;16":
        assert measured < 6.5 * side * side

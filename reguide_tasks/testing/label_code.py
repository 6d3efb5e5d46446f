"""A label code in the pixels of fixture images, so the test server can answer as if it saw the label.

Metadata chunks do not reach a served model: lmms-eval's ``openai`` models open every image and send
it re-encoded (PNG by default, JPEG quality 85 with ``LMMS_IMAGE_ENCODE_FORMAT=JPEG``, downscaled by
0.75 steps when over ``max_size_in_mb``), and some fixture paths are ``.jpg``. So the code is drawn:
the top half of the image is a grid of 4 x 8 cells, each black or white (one bit), each 1/8 of the
image's side. Binary, large cells survive lossy compression and resampling; the reader averages the
centre of each cell (edges ring under JPEG) and accepts only near-black or near-white cells, and 11
check bits (from SHA-256) turn away images that merely look like a code. At 32 px (the fixtures'
default) a cell is one 4 x 4 pixel block, and the code band is whole JPEG blocks.

Payload, 21 bits: the role (id / near / far), the dataset's index in its benchmark, the ID class
index in the benchmark's class list (0 for OoD images) and an instance number (the fixture index
mod 256), which tells apart images of the same class.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

GRID_ROWS, GRID_COLS = 4, 8  # cells of the code band; the band is the top GRID_ROWS / GRID_COLS of the image
ROLES = ("id", "near", "far")
FIELD_BITS = {"role": 2, "dataset": 3, "label": 8, "instance": 8}
CHECK_BITS = GRID_ROWS * GRID_COLS - sum(FIELD_BITS.values())
DARK, LIGHT = 64, 191  # a cell's centre must read at most DARK (0) or at least LIGHT (1)
MIN_SIDE = 2 * GRID_COLS  # below this a cell has no centre to read


@dataclass(frozen=True)
class LabelCode:
    """What a fixture image says about itself: role, dataset index, ID class index, instance."""

    role: str
    dataset: int
    label: int = 0
    instance: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        for name, width in FIELD_BITS.items():
            value = self._number(name)
            if not 0 <= value < 2**width:
                raise ValueError(f"{name} {value} does not fit in {width} bits")

    @classmethod
    def for_document(cls, doc: Mapping[str, Any], instance: int) -> LabelCode:
        """The code of a document (``benchmark``, ``dataset``, ``label``) written as fixture ``instance``."""
        from reguide_tasks.data.benchmarks import get_benchmark

        benchmark = get_benchmark(doc["benchmark"])
        role = benchmark.role(doc["dataset"])
        role = "id" if role == "csid" else role  # a covariate-shifted ID image is answered as ID
        label = int(doc["label"]) if role == "id" else 0
        return cls(role, benchmark.datasets.index(doc["dataset"]), label, instance % 2 ** FIELD_BITS["instance"])

    def _number(self, name: str) -> int:
        return ROLES.index(self.role) if name == "role" else int(getattr(self, name))

    def bits(self) -> list[int]:
        """The payload bits, then the check bits: one per cell, row by row."""
        payload = "".join(format(self._number(name), f"0{width}b") for name, width in FIELD_BITS.items())
        return [int(bit) for bit in payload + _check(payload)]

    @classmethod
    def from_bits(cls, bits: Sequence[int]) -> LabelCode | None:
        """The code the bits spell, or None when the check bits disagree (not a code)."""
        text = "".join(str(int(bit)) for bit in bits)
        payload, check = text[: -CHECK_BITS], text[-CHECK_BITS:]
        if len(text) != GRID_ROWS * GRID_COLS or _check(payload) != check:
            return None
        values, start = {}, 0
        for name, width in FIELD_BITS.items():
            values[name] = int(payload[start : start + width], 2)
            start += width
        if values["role"] >= len(ROLES):
            return None
        values["role"] = ROLES[values["role"]]
        return cls(**values)

    def seed(self) -> int:
        """A seed for this image's draws: the same on every rerun, whatever the encoding."""
        text = "/".join(str(getattr(self, f.name)) for f in fields(self))
        return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _check(payload: str) -> str:
    digest = hashlib.sha256(b"reguide label code " + payload.encode("ascii")).digest()
    return format(int.from_bytes(digest[:2], "big"), "016b")[:CHECK_BITS]


def draw_label_code(pixels: np.ndarray, code: LabelCode) -> np.ndarray:
    """``pixels`` (H x W x 3, uint8) with ``code`` drawn over its top half (a new array)."""
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"a label code needs an image of at least {MIN_SIDE} x {MIN_SIDE} pixels")
    grid = np.array(code.bits(), dtype=np.uint8).reshape(GRID_ROWS, GRID_COLS) * 255
    rows = np.arange(height) * GRID_COLS // height  # a pixel's cell row (cells are square: side / 8)
    cols = np.arange(width) * GRID_COLS // width
    band = rows < GRID_ROWS
    out = pixels.copy()
    out[band] = grid[rows[band]][:, cols][..., None]
    return out


def _centre(start_cell: int, side: int) -> slice:
    """The middle half of a cell along one axis, at least one pixel."""
    low = round((start_cell + 0.25) * side / GRID_COLS)
    high = round((start_cell + 0.75) * side / GRID_COLS)
    return slice(low, max(high, low + 1))


def _gray(image: Any) -> np.ndarray | None:
    """Luma of an encoded image (bytes) or a PIL image; None when it is not an image."""
    from PIL import Image

    try:
        if isinstance(image, (bytes, bytearray)):
            with Image.open(io.BytesIO(image)) as opened:
                return np.asarray(opened.convert("L"), dtype=np.float32)
        return np.asarray(image.convert("L"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # unreadable: no code
        return None


def read_label_code(image: Any) -> LabelCode | None:
    """The code drawn in an image (encoded bytes or a PIL image), or None for an image without one."""
    gray = _gray(image)
    if gray is None or gray.ndim != 2 or min(gray.shape) < MIN_SIDE:
        return None
    height, width = gray.shape
    bits = []
    for row in range(GRID_ROWS):
        for col in range(GRID_COLS):
            level = float(gray[_centre(row, height), _centre(col, width)].mean())
            if DARK < level < LIGHT:
                return None
            bits.append(int(level >= LIGHT))
    return LabelCode.from_bits(bits)

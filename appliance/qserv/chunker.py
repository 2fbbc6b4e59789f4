"""Qserv's spherical partitioning, re-implemented in numpy (pure: arrays in, arrays out).

Why a re-implementation: Qserv's partitioner (``sph-partition``, C++ ``lsst::partition::Chunker``)
is not installable here, and ``lsst.sphgeom.Chunker`` gives chunk geometry but neither per-row
location nor overlap assignment. The algorithm below follows the one in the public Qserv source
(``src/partition/Chunker.cc``, ``Geometry.cc``); docs/QSERV.md describes it step by step. Every
floating-point expression is evaluated in the same order and precision as there, so chunk and
sub-chunk ids match Qserv's on boundaries too, and the tests check the geometry against
``lsst.sphgeom.Chunker`` as an independent oracle.

Conventions: longitudes (RA) and latitudes (Dec) in degrees, RA in [0, 360], Dec in [-90, 90].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.qserv.errors import PartitionConfigError

# The exact literals Qserv uses (Constants.h), so the derived constants round identically.
DEG_PER_RAD = 57.2957795130823208767981548141
RAD_PER_DEG = 0.0174532925199432957692369076849
EPSILON_DEG = 0.001 / 3600  # 1 mas: bounds within this of 360 are clamped to 360

from appliance.qserv.defaults import (  # noqa: E402  (re-exported)
    DEFAULT_NUM_STRIPES,
    DEFAULT_NUM_SUB_STRIPES,
    DEFAULT_OVERLAP,
)


def segments(lat_min: float, lat_max: float, width: float) -> int:
    """Number of equal-RA segments of the band [lat_min, lat_max] at least ``width`` wide on the sky.

    The band's widest latitude (closest to a pole) decides: two points there separated by one
    segment in RA must be at least ``width`` degrees apart.
    """
    lat = max(abs(lat_min), abs(lat_max))
    if lat > 90.0 - 1 / 3600.0:
        return 1
    if width >= 180.0:
        return 1
    if width < 1 / 3600.0:
        # Qserv writes this clamp as `1 / 3600` in integer arithmetic (= 0), which then divides
        # by zero; such fine grids (sub-stripes under 1 arcsec) are refused in Chunker.__init__.
        raise PartitionConfigError("sub-stripe height below 1 arcsec is not supported")
    lat *= RAD_PER_DEG
    cw = math.cos(width * RAD_PER_DEG)
    sl = math.sin(lat)
    cl = math.cos(lat)
    x = cw - sl * sl
    u = cl * cl
    y = math.sqrt(abs(u * u - x * x))
    return int(math.floor(360.0 / abs(DEG_PER_RAD * math.atan2(y, x))))


def max_alpha(radius: float, center_lat: float) -> float:
    """Largest RA half-width of a circle of ``radius`` degrees centred at latitude ``center_lat``."""
    if radius < 0.0 or radius > 90.0:
        raise PartitionConfigError(f"overlap radius {radius} must lie in [0, 90] deg")
    if radius == 0.0:
        return 0.0
    lat = min(max(center_lat, -90.0), 90.0)
    if abs(lat) + radius > 90.0 - 1 / 3600.0:
        return 180.0
    r = radius * RAD_PER_DEG
    lat *= RAD_PER_DEG
    y = math.sin(r)
    x = math.sqrt(abs(math.cos(lat - r) * math.cos(lat + r)))
    return DEG_PER_RAD * abs(math.atan(y / x))


def _clamp_lon(lon: np.ndarray) -> np.ndarray:
    return np.where(lon > 360.0 - EPSILON_DEG, 360.0, lon)


def _clamp_lat(lat: np.ndarray) -> np.ndarray:
    return np.clip(lat, -90.0, 90.0)


@dataclass(frozen=True)
class Locations:
    """Where each input row goes: one primary location per row plus zero or more overlap ones.

    ``overlap_row[i]`` is the input row index of overlap location ``i``; a row appears in the
    overlap of every sub-chunk (of its own or a neighbouring chunk) whose overlap region holds it.
    Overlap locations are grouped by kind (below, above, west, east), not sorted by row.
    """

    chunk_id: np.ndarray  # int32, one per input row
    sub_chunk_id: np.ndarray  # int32, one per input row
    overlap_row: np.ndarray  # int64 indices into the input
    overlap_chunk_id: np.ndarray  # int32
    overlap_sub_chunk_id: np.ndarray  # int32


class Chunker:
    """The chunk/sub-chunk grid for one (num_stripes, num_sub_stripes, overlap) configuration."""

    def __init__(
        self,
        num_stripes: int = DEFAULT_NUM_STRIPES,
        num_sub_stripes: int = DEFAULT_NUM_SUB_STRIPES,
        overlap: float = DEFAULT_OVERLAP,
    ):
        if num_stripes < 1 or num_sub_stripes < 1:
            raise PartitionConfigError("num-stripes and num-sub-stripes must be positive")
        if overlap < 0.0 or overlap > 10.0:
            raise PartitionConfigError(f"overlap {overlap} deg must lie in [0, 10] deg")
        n_ss = num_stripes * num_sub_stripes
        stripe_height = 180.0 / num_stripes
        sub_stripe_height = 180.0 / n_ss
        if sub_stripe_height < overlap:
            raise PartitionConfigError(
                f"overlap {overlap} deg is larger than the sub-stripe height {sub_stripe_height} deg"
            )
        self.num_stripes = num_stripes
        self.num_sub_stripes = num_sub_stripes
        self.overlap = float(overlap)
        self.sub_stripe_height = sub_stripe_height
        chunks_per_stripe = np.empty(num_stripes, dtype=np.int64)
        sub_chunks_per_chunk = np.empty(n_ss, dtype=np.int64)
        sub_chunk_width = np.empty(n_ss, dtype=np.float64)
        alpha = np.empty(n_ss, dtype=np.float64)
        for i in range(num_stripes):
            nc = segments(i * stripe_height - 90.0, (i + 1) * stripe_height - 90.0, stripe_height)
            chunks_per_stripe[i] = nc
            for j in range(num_sub_stripes):
                ss = i * num_sub_stripes + j
                lat_min = ss * sub_stripe_height - 90.0
                lat_max = (ss + 1) * sub_stripe_height - 90.0
                nsc = segments(lat_min, lat_max, sub_stripe_height) // nc
                sub_chunks_per_chunk[ss] = nsc
                scw = 360.0 / (nsc * nc)
                sub_chunk_width[ss] = scw
                a = max_alpha(overlap, max(abs(lat_min), abs(lat_max)))
                if a > scw:
                    raise PartitionConfigError(
                        f"overlap {overlap} deg is wider than the sub-chunks of sub-stripe {ss}"
                    )
                alpha[ss] = a
        self.chunks_per_stripe = chunks_per_stripe
        self.sub_chunks_per_chunk = sub_chunks_per_chunk
        self.sub_chunk_width = sub_chunk_width
        self.alpha = alpha
        self.max_sub_chunks_per_chunk = int(sub_chunks_per_chunk.max())

    # ----------------------------------------------------------------- identifiers and bounds
    @property
    def num_total_sub_stripes(self) -> int:
        return self.num_stripes * self.num_sub_stripes

    def config(self) -> dict[str, float | int]:
        return {
            "num_stripes": self.num_stripes,
            "num_sub_stripes": self.num_sub_stripes,
            "overlap": self.overlap,
        }

    def stripe_of(self, chunk_id: int) -> int:
        return chunk_id // (2 * self.num_stripes)

    def chunk_id(self, stripe: int, chunk: int) -> int:
        return stripe * 2 * self.num_stripes + chunk

    def is_valid(self, chunk_id: int) -> bool:
        stripe = self.stripe_of(chunk_id)
        if chunk_id < 0 or stripe >= self.num_stripes:
            return False
        return chunk_id - stripe * 2 * self.num_stripes < self.chunks_per_stripe[stripe]

    def all_chunks(self) -> list[int]:
        return [self.chunk_id(s, c) for s in range(self.num_stripes) for c in range(int(self.chunks_per_stripe[s]))]

    def chunk_bounds(self, chunk_id: int) -> tuple[float, float, float, float]:
        """(ra_min, ra_max, dec_min, dec_max) of a chunk, in degrees."""
        stripe = self.stripe_of(chunk_id)
        chunk = chunk_id - stripe * 2 * self.num_stripes
        width = 360.0 / int(self.chunks_per_stripe[stripe])
        h, nss = self.sub_stripe_height, self.num_sub_stripes
        return (
            chunk * width,
            float(_clamp_lon(np.float64((chunk + 1) * width))),
            float(_clamp_lat(np.float64(stripe * nss * h - 90.0))),
            float(_clamp_lat(np.float64((stripe + 1) * nss * h - 90.0))),
        )

    def sub_chunk_bounds(self, chunk_id: int, sub_chunk_id: int) -> tuple[float, float, float, float]:
        stripe = self.stripe_of(chunk_id)
        chunk = chunk_id - stripe * 2 * self.num_stripes
        ss = stripe * self.num_sub_stripes + sub_chunk_id // self.max_sub_chunks_per_chunk
        nscpc = int(self.sub_chunks_per_chunk[ss])
        sc = sub_chunk_id - (ss - stripe * self.num_sub_stripes) * self.max_sub_chunks_per_chunk
        sc += chunk * nscpc
        w, h = float(self.sub_chunk_width[ss]), self.sub_stripe_height
        return (
            sc * w,
            float(_clamp_lon(np.float64((sc + 1) * w))),
            float(_clamp_lat(np.float64(ss * h - 90.0))),
            float(_clamp_lat(np.float64((ss + 1) * h - 90.0))),
        )

    # ----------------------------------------------------------------- location (hot path)
    def _primary(self, lon: np.ndarray, lat: np.ndarray):
        n_ss = self.num_total_sub_stripes
        ss = np.floor((lat + 90.0) / self.sub_stripe_height).astype(np.int64)
        np.minimum(ss, n_ss - 1, out=ss)
        stripe = ss // self.num_sub_stripes
        scw = self.sub_chunk_width[ss]
        sc = np.floor(lon / scw).astype(np.int64)
        nscpc = self.sub_chunks_per_chunk[ss]
        nsub = self.chunks_per_stripe[stripe] * nscpc
        np.minimum(sc, nsub - 1, out=sc)
        chunk = sc // nscpc
        chunk_id = stripe * (2 * self.num_stripes) + chunk
        sub_id = (ss - stripe * self.num_sub_stripes) * self.max_sub_chunks_per_chunk + (sc - chunk * nscpc)
        return ss, stripe, sc, scw, nscpc, nsub, chunk_id, sub_id

    def locate(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Primary (chunkId, subChunkId) of every position: what Qserv's ``locate()`` returns."""
        lon, lat = self._check(ra, dec)
        *_, chunk_id, sub_id = self._primary(lon, lat)
        return chunk_id.astype(np.int32), sub_id.astype(np.int32)

    LOCATE_BLOCK = 65_536  # rows located at once: the overlap expansion's temporaries stay ~25 MB

    def locate_all(self, ra, dec) -> Locations:
        """Primary location of every row plus every overlap location (Qserv's ``locate(pos, -1)``).

        Done in blocks of LOCATE_BLOCK rows: one call on 262k rows of an 85/12/0.1 grid (3.5 overlap
        locations per row) otherwise holds ~110 MB of int64 temporaries.
        """
        lon, lat = self._check(ra, dec)
        if lon.size <= self.LOCATE_BLOCK:
            return self._locate_all(lon, lat)
        parts = [self._locate_all(lon[i : i + self.LOCATE_BLOCK], lat[i : i + self.LOCATE_BLOCK]) for i in range(0, lon.size, self.LOCATE_BLOCK)]
        starts = range(0, lon.size, self.LOCATE_BLOCK)
        return Locations(
            np.concatenate([p.chunk_id for p in parts]),
            np.concatenate([p.sub_chunk_id for p in parts]),
            np.concatenate([p.overlap_row + i for p, i in zip(parts, starts, strict=True)]),
            np.concatenate([p.overlap_chunk_id for p in parts]),
            np.concatenate([p.overlap_sub_chunk_id for p in parts]),
        )

    def _locate_all(self, lon: np.ndarray, lat: np.ndarray) -> Locations:
        ss, stripe, sc, scw, nscpc, nsub, chunk_id, sub_id = self._primary(lon, lat)
        rows: list[np.ndarray] = []
        chunks: list[np.ndarray] = []
        subs: list[np.ndarray] = []
        if self.overlap > 0.0:
            h = self.sub_stripe_height
            lat_min = _clamp_lat(ss * h - 90.0)
            lat_max = _clamp_lat((ss + 1) * h - 90.0)
            down = np.nonzero((ss > 0) & (lat < lat_min + self.overlap))[0]
            up = np.nonzero((ss < self.num_total_sub_stripes - 1) & (lat >= lat_max - self.overlap))[0]
            for idx, step in ((down, -1), (up, 1)):
                if idx.size:
                    r, c, s = self._up_down(lon[idx], ss[idx] + step)
                    rows.append(idx[r])
                    chunks.append(c)
                    subs.append(s)
            lon_min = sc * scw
            lon_max = _clamp_lon((sc + 1) * scw)
            a = self.alpha[ss]
            multi = nsub > 1
            left = np.nonzero(multi & (lon < lon_min + a))[0]
            right = np.nonzero(multi & (lon > lon_max - a))[0]
            for idx, step in ((left, -1), (right, 1)):
                if idx.size:
                    n = nsub[idx]
                    nb = sc[idx] + step
                    nb = np.where(nb < 0, n - 1, np.where(nb >= n, 0, nb))
                    p = nscpc[idx]
                    ch = nb // p
                    rows.append(idx)
                    chunks.append(stripe[idx] * (2 * self.num_stripes) + ch)
                    subs.append((ss[idx] - stripe[idx] * self.num_sub_stripes) * self.max_sub_chunks_per_chunk + (nb - ch * p))
        if rows:
            o_rows = np.concatenate(rows)
            o_chunks = np.concatenate(chunks)
            o_subs = np.concatenate(subs)
        else:
            o_rows = np.empty(0, np.int64)
            o_chunks = o_subs = np.empty(0, np.int64)
        return Locations(
            chunk_id.astype(np.int32),
            sub_id.astype(np.int32),
            o_rows.astype(np.int64),
            o_chunks.astype(np.int32),
            o_subs.astype(np.int32),
        )

    def _up_down(self, lon: np.ndarray, ss: np.ndarray):
        """Sub-chunks of the neighbouring sub-stripe ``ss`` whose overlap regions contain ``lon``.

        Returns (position in ``lon``, chunkId, subChunkId) triples; one position may yield
        several sub-chunks, enumerated the way Qserv walks them (with the 0/360 wrap).
        """
        stripe = ss // self.num_sub_stripes
        p = self.sub_chunks_per_chunk[ss]
        n = self.chunks_per_stripe[stripe] * p
        w = self.sub_chunk_width[ss]
        a = self.alpha[ss]
        lo = np.floor((lon - a) / w).astype(np.int64)
        hi = np.floor((lon + a) / w).astype(np.int64)
        lo = np.where(lo < 0, lo + n, lo)
        hi = np.where(hi >= n, hi - n, hi)
        count = np.where(lo > hi, n - lo + hi + 1, hi - lo + 1)
        pos = np.repeat(np.arange(lon.size), count)
        start = np.cumsum(count) - count
        rank = np.arange(pos.size) - np.repeat(start, count)
        sub = lo[pos] + rank
        n_rep = n[pos]
        sub = np.where(sub >= n_rep, sub - n_rep, sub)
        p_rep = p[pos]
        chunk = sub // p_rep
        stripe_rep = stripe[pos]
        chunk_id = stripe_rep * (2 * self.num_stripes) + chunk
        sub_id = (ss[pos] - stripe_rep * self.num_sub_stripes) * self.max_sub_chunks_per_chunk + (sub - chunk * p_rep)
        return pos, chunk_id, sub_id

    @staticmethod
    def _check(ra, dec) -> tuple[np.ndarray, np.ndarray]:
        lon = np.asarray(ra, dtype=np.float64)
        lat = np.asarray(dec, dtype=np.float64)
        if lon.shape != lat.shape:
            raise ValueError("ra and dec must have the same shape")
        bad = ~((lon >= 0.0) & (lon <= 360.0) & (lat >= -90.0) & (lat <= 90.0))
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise ValueError(
                f"{int(bad.sum())} position(s) outside RA [0, 360] / Dec [-90, 90] deg "
                f"(or NaN), first at row {i}: ({lon.flat[i]}, {lat.flat[i]})"
            )
        return lon.ravel(), lat.ravel()

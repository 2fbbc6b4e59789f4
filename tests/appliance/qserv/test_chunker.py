"""Qserv chunking: hand-computed ids, lsst.sphgeom as an independent oracle, brute-force overlaps."""

from __future__ import annotations

import math

import lsst.sphgeom as sg
import numpy as np
import pytest

from appliance.qserv.chunker import Chunker, segments
from appliance.qserv.errors import PartitionConfigError
from appliance.qserv.generate import angular_separation

C = Chunker()  # 340 stripes, 3 sub-stripes, overlap 0.01667 deg (the DP0.x layout)


def test_grid_by_hand():
    # Stripe height 180/340 deg; the polar stripes are single chunks (their widest latitude is
    # within 1 arcsec of the pole), the equatorial stripe has floor(360 / 0.5302) = 679 chunks.
    assert C.chunks_per_stripe[0] == 1 and C.chunks_per_stripe[339] == 1
    assert C.chunks_per_stripe[170] == 679
    assert segments(0.0, 180 / 340, 180 / 340) == 679
    # chunkId = stripe * 2 * numStripes + chunk
    assert C.chunk_id(170, 0) == 115600


@pytest.mark.parametrize(
    "ra, dec, chunk, sub",
    [
        (123.0, -90.0, 0, 0),  # south pole: stripe 0, its only chunk
        (10.0, -89.9, 0, 0),
        (200.0, 90.0, 230520, 24),  # north pole: Dec 90 clamps into the last sub-stripe
        (0.0, 0.1, 115600, 0),  # RA 0 opens chunk 0 of stripe 170
        (359.9999999, 0.1, 115600 + 678, 2),  # RA just below 360: last chunk, last sub-chunk
        (360.0, 0.1, 115600 + 678, 2),  # RA 360 clamps into the last chunk like Qserv
        (360 / 679, 0.1, 115601, 0),  # a chunk's west edge belongs to it (half-open)
        (360 / 679 - 1e-12, 0.1, 115600, 2),
        # Dec 0 exactly: (0 + 90) / (180/1020) is 509.99999999999994 in IEEE doubles, so Qserv
        # (and we) put it in sub-stripe 509, i.e. stripe 169, south of the equator.
        (0.0, 0.0, 114920, 24),
        (0.0, 1e-7, 115600, 0),
    ],
)
def test_hand_computed_locations(ra, dec, chunk, sub):
    c, s = C.locate([ra], [dec])
    assert (int(c[0]), int(s[0])) == (chunk, sub)


def test_invalid_positions_and_configs():
    with pytest.raises(ValueError):
        C.locate([-1.0], [0.0])
    with pytest.raises(ValueError):
        C.locate([1.0], [float("nan")])
    with pytest.raises(PartitionConfigError):
        Chunker(340, 3, overlap=1.0)  # wider than a sub-stripe


def _box_deg(box):
    lon, lat = box.getLon(), box.getLat()
    return (lon.getA().asDegrees(), lon.getB().asDegrees(), lat.getA().asDegrees(), lat.getB().asDegrees())


def test_grid_agrees_with_sphgeom():
    sgc = sg.Chunker(340, 3)
    for stripe in range(340):
        w = sgc.getChunkBoundingBox(stripe, 0).getWidth().asDegrees()
        assert round(360 / w) == C.chunks_per_stripe[stripe], stripe
    for ss in range(0, 1020, 7):
        w = sgc.getSubChunkBoundingBox(ss, 0).getWidth().asDegrees()
        nc = C.chunks_per_stripe[ss // 3]
        assert round(360 / w) == C.sub_chunks_per_chunk[ss] * nc, ss


def test_locations_agree_with_sphgeom():
    rng = np.random.default_rng(7)
    n = 3000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    # plus the hard places: both polar caps and the RA wrap
    ra = np.concatenate([ra, rng.uniform(0, 360, 200), rng.uniform(0, 360, 200), rng.uniform(359.9, 360, 100), rng.uniform(0, 0.1, 100)])
    dec = np.concatenate([dec, rng.uniform(-90, -89, 200), rng.uniform(89, 90, 200), rng.uniform(-60, 60, 200)])
    chunk, sub = C.locate(ra, dec)
    sgc = sg.Chunker(340, 3)
    for r, d, c, s in zip(ra, dec, chunk, sub, strict=True):
        p = sg.LonLat.fromDegrees(r, d)
        circle = sg.Circle(sg.UnitVector3d(p), sg.Angle.fromDegrees(1e-6))
        hits = dict(sgc.getSubChunksIntersecting(circle))
        assert int(c) in hits, (r, d, c)
        assert int(s) in hits[int(c)], (r, d, c, s)
        stripe = sgc.getStripe(int(c))
        assert sgc.getChunkBoundingBox(stripe, sgc.getChunk(int(c), stripe)).dilatedBy(sg.Angle.fromDegrees(1e-9)).contains(p)


@pytest.mark.parametrize("centre", [(180.0, 20.0), (0.0, -45.0), (45.0, 89.3), (300.0, -89.5)])
def test_overlap_brute_force(centre):
    """Every pair closer than the overlap: the partner is in the row's chunk or in its sub-chunk's overlap."""
    ch = Chunker(85, 4, overlap=0.3)  # coarse grid, wide overlap: many boundaries in a small sample
    rng = np.random.default_rng(11)
    n = 1500
    ra0, dec0 = centre
    dec = np.clip(dec0 + rng.uniform(-1.5, 1.5, n), -90, 90)
    ra = np.mod(ra0 + rng.uniform(-1.5, 1.5, n) / max(math.cos(math.radians(min(abs(dec0), 88.0))), 0.02), 360)
    loc = ch.locate_all(ra, dec)
    # exactly one primary location per row, consistent with locate()
    c1, s1 = ch.locate(ra, dec)
    assert np.array_equal(c1, loc.chunk_id) and np.array_equal(s1, loc.sub_chunk_id)
    holds = {}
    for row, c, s in zip(loc.overlap_row, loc.overlap_chunk_id, loc.overlap_sub_chunk_id, strict=True):
        holds.setdefault((int(c), int(s)), set()).add(int(row))
    # an overlap location is never the row's own sub-chunk
    own = set(zip(loc.chunk_id.tolist(), loc.sub_chunk_id.tolist(), strict=True))
    for (c, s), rows in holds.items():
        for r in rows:
            assert (int(loc.chunk_id[r]), int(loc.sub_chunk_id[r])) != (c, s)
    assert own
    sep = angular_separation(ra[:, None], dec[:, None], ra[None, :], dec[None, :])
    close_i, close_j = np.nonzero(sep < ch.overlap * 0.999)
    for i, j in zip(close_i.tolist(), close_j.tolist(), strict=True):
        key_i = (int(loc.chunk_id[i]), int(loc.sub_chunk_id[i]))
        key_j = (int(loc.chunk_id[j]), int(loc.sub_chunk_id[j]))
        if key_i != key_j:
            assert j in holds.get(key_i, set()), (i, j, key_i, key_j, sep[i, j])


# Positions (ra_PS, decl_PS) of Object rows in Qserv's own partitioned test data set
# (lsst/qserv doc_datasets/test101/data/Object/chunk_7480.txt, partitioned by sph-partition with
# num_stripes=85, num_sub_stripes=12, overlap=0.01667 per database_test101.json). Every one of
# these rows carries chunkId 7480 and subChunkId 7 in that file.
QSERV_TEST101 = [
    (1.30450574307, 3.34239540723), (1.29873856374, 3.34291635291), (1.30336218408, 3.34004231046),
    (1.29590214432, 3.34315325777), (1.29623723993, 3.3424035605), (1.29784757102, 3.33954827521),
    (1.29801680549, 3.33619102281), (1.29938740535, 3.34665445636), (1.30047237939, 3.34837671217),
    (1.30299517694, 3.34876920498), (1.30678301762, 3.34430294848), (1.3081453276, 3.31418187724),
    (1.31026941339, 3.31135768259), (1.31306740829, 3.31177814202), (1.34659297817, 3.2948579379),
    (1.36699143129, 3.27600119412), (1.36965771273, 3.27288967974), (1.37011205665, 3.2717432141),
    (1.36695492979, 3.28213226096), (1.3672559145, 3.28006061194), (1.36459250446, 3.28160856472),
    (1.36433250228, 3.2837560863), (1.35957476884, 3.2808515771), (1.36622200982, 3.27948185409),
    (1.34430211457, 3.29442763697), (1.36697921711, 3.27537656268), (1.35491319983, 3.20505126313),
    (1.37425525029, 3.20215198387), (1.37611012051, 3.19997950132), (1.37599608565, 3.19918624121),
    (1.37150466424, 3.1967542571), (1.29019691967, 3.27650612295), (1.36608465478, 3.20450328939),
    (1.3707170581, 3.19645126243), (1.36770699573, 3.19904462895), (1.3654527131, 3.2006476375),
    (1.36125312169, 3.20012987246), (1.36062624912, 3.19909093306), (1.35693955675, 3.20222531883),
]


def test_matches_qserv_partitioner_output_test101():
    ch = Chunker(85, 12, 0.01667)
    ra, dec = zip(*QSERV_TEST101, strict=True)
    chunk, sub = ch.locate(ra, dec)
    assert set(chunk.tolist()) == {7480} and set(sub.tolist()) == {7}
    # None of these rows is within the overlap of stripe 43 (chunk 7310), whose overlap file
    # in the same data set holds only rows with Dec < 3.1765 + 0.01667.
    loc = ch.locate_all(ra, dec)
    assert 7310 not in set(loc.overlap_chunk_id.tolist())

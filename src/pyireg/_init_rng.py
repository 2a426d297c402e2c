"""The initial weights of many small networks at once, drawn from exactly the numbers their own
generators would give, without a Python object per network.

Network n of a model seeded with the int s draws from
``default_rng(SeedSequence(s).spawn(N)[n])``: PCG64 seeded by a child SeedSequence, normals by
numpy's ziggurat. Building a Generator per network costs about 15 microseconds (33 s for a
million width-1 networks), so for small networks this module runs the same three algorithms
vectorized across networks in numpy's uint32/uint64 arithmetic (which wraps as C's does):

1. SeedSequence's entropy mixing and ``generate_state`` (only the spawn word differs between
   children, so the shared part is mixed once and the last step vectorized);
2. PCG64's seeding and 128-bit LCG step with the XSL-RR output, in (hi, lo) uint64 pairs;
3. for uniform initializations, numpy's ``random()``: one step, ``(output >> 11) * 2^-53``;
4. the ziggurat's first try (99% of the draws): a draw is accepted when its 52-bit magnitude
   is below the layer's threshold ``ki`` and is then ``rabs * wi``; a draw that is not accepted
   is redone by numpy itself from that network's state (a scratch PCG64 set to it), so the
   wedge and tail paths are numpy's own.

The tables ``ki`` and ``wi`` are not public: they are read out of numpy once per process by
steering a scratch PCG64 to outputs of our choosing (``_ziggurat_tables``). Every result is
compared bit for bit with the per-network generators in tests/test_sizes.py (normals) and
tests/test_inits.py (uniforms).
"""
from __future__ import annotations

import numpy as np

M32, M64 = 0xFFFFFFFF, (1 << 64) - 1
# SeedSequence's constants (numpy/random/bit_generator.pyx)
INIT_A, MULT_A, INIT_B, MULT_B = 0x43b0d7e5, 0x931e8875, 0x8b51f9dd, 0x58f38ded
MIX_MULT_L, MIX_MULT_R, XSHIFT, POOL = 0xca01f9dd, 0x4973f715, 16, 4
# PCG64's 128-bit multiplier
PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645

_U32 = np.uint32
_U64 = np.uint64


def _words(n: int) -> list[int]:
    """An int as little-endian 32-bit words (SeedSequence's coercion; 0 is one word)."""
    if n < 0:
        raise ValueError("seed: expected a non-negative int")
    out = [n & M32] if n == 0 else []
    while n > 0:
        out.append(n & M32)
        n >>= 32
    return out


def _hashmix_scalar(value: int, hc: list) -> int:
    value ^= hc[0]
    hc[0] = (hc[0] * MULT_A) & M32
    value = (value * hc[0]) & M32
    return value ^ (value >> XSHIFT)


def _mix_scalar(x: int, y: int) -> int:
    r = (MIX_MULT_L * x - MIX_MULT_R * y) & M32
    return r ^ (r >> XSHIFT)


def _mix_vec(x, y):
    r = (_U32(MIX_MULT_L) * x - _U32(MIX_MULT_R) * y).astype(_U32)
    return r ^ (r >> _U32(XSHIFT))


def child_pcg_states(seed: int, first: int, count: int):
    """PCG64 (state, inc) of children ``first .. first+count-1`` of ``SeedSequence(seed)``, as
    four uint64 arrays (state_hi, state_lo, inc_hi, inc_lo)."""
    run = _words(int(seed))
    if len(run) < POOL:
        run = run + [0] * (POOL - len(run))
    hc = [INIT_A]
    mixer = [_hashmix_scalar(run[i], hc) for i in range(POOL)]
    for src in range(POOL):
        for dst in range(POOL):
            if src != dst:
                mixer[dst] = _mix_scalar(mixer[dst], _hashmix_scalar(mixer[src], hc))
    for src in range(POOL, len(run)):                      # seeds above 2^128: shared words
        for dst in range(POOL):
            mixer[dst] = _mix_scalar(mixer[dst], _hashmix_scalar(run[src], hc))
    idx = np.arange(first, first + count, dtype=np.uint64)
    if first + count > 1 << 32:
        raise ValueError("seed: more than 2^32 networks")
    spawn = idx.astype(_U32)
    pool = [np.full(count, m, dtype=_U32) for m in mixer]
    # the spawn word, mixed into every pool word (hashmix's constant is the same for all lanes)
    for dst in range(POOL):
        value = spawn ^ _U32(hc[0])
        hc[0] = (hc[0] * MULT_A) & M32
        value = (value * _U32(hc[0])).astype(_U32)
        value ^= value >> _U32(XSHIFT)
        pool[dst] = _mix_vec(pool[dst], value)
    # generate_state(4, uint64): 8 words cycling over the pool
    hb, words = INIT_B, []
    for i in range(8):
        v = pool[i % POOL] ^ _U32(hb)
        hb = (hb * MULT_B) & M32
        v = (v * _U32(hb)).astype(_U32)
        v ^= v >> _U32(XSHIFT)
        words.append(v.astype(_U64))
    val = [words[2 * i] | (words[2 * i + 1] << _U64(32)) for i in range(4)]
    # pcg64_set_seed: initstate = val[0]:val[1] (high:low), initseq = val[2]:val[3]
    inc_hi = (val[2] << _U64(1)) | (val[3] >> _U64(63))
    inc_lo = (val[3] << _U64(1)) | _U64(1)
    s_hi = np.zeros(count, _U64)
    s_lo = np.zeros(count, _U64)
    s_hi, s_lo = _step(s_hi, s_lo, inc_hi, inc_lo)
    s_hi, s_lo = _add128(s_hi, s_lo, val[0], val[1])
    s_hi, s_lo = _step(s_hi, s_lo, inc_hi, inc_lo)
    return s_hi, s_lo, inc_hi, inc_lo


def _add128(ah, al, bh, bl):
    lo = al + bl
    return ah + bh + (lo < al).astype(_U64), lo


_MH, _ML = _U64(PCG_MULT >> 64), _U64(PCG_MULT & M64)
_B0, _B1 = _U64(PCG_MULT & M32), _U64((PCG_MULT >> 32) & M32)


def _step(hi, lo, inc_hi, inc_lo):
    """state * PCG_MULT + inc (mod 2^128), on (hi, lo) uint64 pairs."""
    a0, a1 = lo & _U64(M32), lo >> _U64(32)
    p00, p01, p10, p11 = a0 * _B0, a0 * _B1, a1 * _B0, a1 * _B1
    mid = (p00 >> _U64(32)) + (p01 & _U64(M32)) + (p10 & _U64(M32))
    new_lo = (p00 & _U64(M32)) | (mid << _U64(32))
    new_hi = p11 + (p01 >> _U64(32)) + (p10 >> _U64(32)) + (mid >> _U64(32)) + lo * _MH + hi * _ML
    return _add128(new_hi, new_lo, inc_hi, inc_lo)


def _output(hi, lo):
    """PCG64's XSL-RR output of the (stepped) state."""
    rot = hi >> _U64(58)
    x = hi ^ lo
    return (x >> rot) | (x << ((_U64(64) - rot) & _U64(63)))


# ----------------------------------------------------------------------------- the ziggurat
_TABLES = None


def _scratch():
    bg = np.random.PCG64(0)
    return bg, np.random.Generator(bg)


def _set(bg, hi: int, lo: int, inc_hi: int, inc_lo: int) -> None:
    bg.state = {"bit_generator": "PCG64", "state": {"state": (hi << 64) | lo, "inc": (inc_hi << 64) | inc_lo},
                "has_uint32": 0, "uinteger": 0}


def _ziggurat_tables():
    """(ki, wi) of numpy's standard normal ziggurat, read out of numpy: a scratch PCG64 is set
    to the state whose next output is a chosen r (then rabs = r >> 9 & (2^52 - 1) of layer
    r & 255); a draw accepted on the first try advances the state once. wi = the result at
    rabs = 1; ki = the least rabs not accepted (found by bisection; some layers accept none)."""
    global _TABLES
    if _TABLES is not None:
        return _TABLES
    bg, g = _scratch()
    inv = pow(PCG_MULT, -1, 1 << 128)
    inc = 1

    def draw(r: int):
        after = r                       # a state with top 6 bits 0 and hi 0 outputs its low word
        before = ((after - inc) * inv) % (1 << 128)
        _set(bg, before >> 64, before & M64, 0, inc)
        x = g.standard_normal()
        return x, bg.state["state"]["state"] == after

    ki = np.zeros(256, dtype=np.uint64)
    wi = np.zeros(256, dtype=np.float64)
    for idx in range(256):
        x, ok = draw(idx | (1 << 9))
        if not ok:                      # a layer never accepted on the first try (ki = 0 or 1)
            ki[idx] = 1 if draw(idx)[1] else 0
            continue
        wi[idx] = x
        lo, hi = 1, 1 << 52             # accepted at lo; find the least rabs that is not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if draw(idx | (mid << 9))[1]:
                lo = mid
            else:
                hi = mid
        ki[idx] = hi
    _TABLES = ki, wi
    return _TABLES


_CHECKS: dict = {}


def _matches_numpy(method: str, draw, counts) -> bool:
    """Whether ``draw`` (normals or uniforms) gives the streams of numpy's own
    ``Generator.<method>``: a few children compared bit for bit, once per process (cached),
    before the bulk path is used."""
    if method not in _CHECKS:
        try:
            ok = True
            for seed in (0, 12345):
                n = np.array(counts)
                Z, order, c_sorted = draw(child_pcg_states(seed, 0, len(n)), n)
                for pos, lane in enumerate(order):
                    want = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(lane),)))
                    ok &= np.array_equal(Z[:int(c_sorted[pos]), pos], getattr(want, method)(int(n[lane])))
            _CHECKS[method] = bool(ok)
        except Exception:   # noqa: BLE001  (numpy's internals differ: the generators are used)
            _CHECKS[method] = False
    return _CHECKS[method]


def check_ziggurat() -> bool:
    """Whether ``normals`` gives numpy's own standard_normal() streams (see _matches_numpy)."""
    return _matches_numpy("standard_normal", normals, (700, 1, 1300))


def normals(states, counts: np.ndarray):
    """The first ``counts[i]`` standard normals of each lane's PCG64 (``states`` as from
    child_pcg_states). Returns (Z, order, sorted counts): lanes sorted by count, longest first
    (``order[pos]`` is the lane in column ``pos``), and Z (max count, lanes) float64 with lane
    ``order[pos]``'s normals in ``Z[:count, pos]``."""
    ki, wi = _ziggurat_tables()
    n = len(counts)
    order = np.argsort(-counts, kind="stable")            # longest first: the active lanes are a prefix
    c_sorted = counts[order]
    s_hi, s_lo, inc_hi, inc_lo = (a[order] for a in states)
    m = int(c_sorted[0]) if n else 0
    Z = np.empty((m, n), dtype=np.float64)
    active = np.searchsorted(-c_sorted, -np.arange(1, m + 1), side="right")   # lanes with count > j
    bg = g = None
    for j in range(m):
        a = int(active[j])
        h, lo = _step(s_hi[:a], s_lo[:a], inc_hi[:a], inc_lo[:a])
        r = _output(h, lo)
        idx = (r & _U64(0xFF)).astype(np.intp)
        r8 = r >> _U64(8)
        rabs = (r8 >> _U64(1)) & _U64((1 << 52) - 1)
        x = rabs.astype(np.float64) * wi[idx]
        x = np.where((r8 & _U64(1)).astype(bool), -x, x)
        s_hi[:a], s_lo[:a] = h, lo
        bad = np.flatnonzero(rabs >= ki[idx])
        if bad.size:                                      # not accepted on the first try: numpy redoes it
            if bg is None:
                bg, g = _scratch()
            for b in bad.tolist():
                # from the state before this draw (one step back), as numpy would draw it
                ph, pl = _unstep(int(h[b]), int(lo[b]), int(inc_hi[b]), int(inc_lo[b]))
                _set(bg, ph, pl, int(inc_hi[b]), int(inc_lo[b]))
                x[b] = g.standard_normal()
                st = bg.state["state"]["state"]
                s_hi[b], s_lo[b] = _U64(st >> 64), _U64(st & M64)
        Z[j, :a] = x
    return Z, order, c_sorted


_INV = pow(PCG_MULT, -1, 1 << 128)


def _unstep(hi: int, lo: int, inc_hi: int, inc_lo: int):
    s = ((((hi << 64) | lo) - ((inc_hi << 64) | inc_lo)) * _INV) % (1 << 128)
    return s >> 64, s & M64



def uniforms(states, counts: np.ndarray):
    """The first ``counts[i]`` draws of ``Generator.random()`` (uniform in [0, 1), float64) of
    each lane's PCG64, laid out as ``normals`` lays them out: (Z, order, sorted counts)."""
    n = len(counts)
    order = np.argsort(-counts, kind="stable")
    c_sorted = counts[order]
    s_hi, s_lo, inc_hi, inc_lo = (a[order] for a in states)
    m = int(c_sorted[0]) if n else 0
    Z = np.empty((m, n), dtype=np.float64)
    active = np.searchsorted(-c_sorted, -np.arange(1, m + 1), side="right")
    for j in range(m):
        a = int(active[j])
        h, lo = _step(s_hi[:a], s_lo[:a], inc_hi[:a], inc_lo[:a])
        s_hi[:a], s_lo[:a] = h, lo
        # numpy's next_double for PCG64: the top 53 bits of the 64-bit output, times 2^-53
        Z[j, :a] = (_output(h, lo) >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return Z, order, c_sorted


def check_uniform() -> bool:
    """Whether ``uniforms`` gives numpy's own random() streams, before the bulk path is used for a
    uniform initialization (see _matches_numpy)."""
    return _matches_numpy("random", uniforms, (300, 1, 500))

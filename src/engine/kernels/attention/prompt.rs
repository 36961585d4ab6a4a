//! Attention of a prompt's positions over the cache: hundreds of query rows
//! at once, where the decode kernel takes a few.
//!
//! The general computation (two matrix products with a mask and a softmax
//! between them) scores every query against every key, builds and adds a
//! mask of as many values, and takes the exponential of each score, masked
//! or not: at 6,000 positions it was three quarters of a small model's
//! prefill. Here each unit of work is one key/value head and a block of
//! [`BLOCK`] query positions (all the query heads that share the key/value
//! head); it walks the keys its queries see in tiles of [`TILE`], widened
//! once to f32 for all its rows, with a running maximum and sum per row
//! (the softmax of the whole row, rescaled as the maximum grows), and never
//! touches a key a query does not see. The exponentials are a vector
//! polynomial, not one library call per score. One body serves 256-bit
//! vectors (AVX2) and 512-bit ones (AVX-512, where the CPU has it): a tile
//! is four vectors of keys, 32 or 64.

use super::{Cache, View};

/// Query positions per unit of work. Each unit widens and transposes every
/// key its queries see, so more positions share that work: at 6,204
/// positions 64 read the prompt 18% faster than 16, and 128 no faster.
const BLOCK: usize = 64;

/// Vectors of key positions per tile: four vectors of scores per query
/// row.
const TILE_VECTORS: usize = 4;

/// `softmax(q·kᵀ · scale + causal mask) · v` as [`super::attend`] computes
/// it, for many rows, over `kv` key/value heads: (kv, rep · seq, d) values,
/// or `None` where this CPU has no vector kernel for it or rows are not a
/// whole number of 8 values.
pub(super) fn attend(job: &Job, kv: usize) -> Option<Vec<f32>> {
    use crate::engine::kernels::{isa, Isa};
    let (seq, d) = (job.seq, job.d);
    if isa() == Isa::Scalar || !d.is_multiple_of(8) {
        return None;
    }
    let wide = isa() == Isa::Vnni && d.is_multiple_of(16);
    let tile = TILE_VECTORS * if wide { 16 } else { 8 };
    let blocks = seq.div_ceil(BLOCK);
    let units = kv * blocks;
    let mut out = vec![0f32; kv * job.rep * seq * d];
    let dst = out.as_mut_ptr() as usize;
    let work = |units: std::ops::Range<usize>| {
        let mut scratch = Scratch::new(job.rep * BLOCK, d, tile);
        for u in units {
            // The last blocks see the most keys: they go first, so that no
            // thread is left with a long one at the end.
            let (h, b) = (u % kv, blocks - 1 - u / kv);
            let positions = b * BLOCK..seq.min((b + 1) * BLOCK);
            let out = dst as *mut f32;
            // SAFETY: the CPU has AVX2, FMA and F16C, and AVX-512 F when
            // `wide`, whose heads are whole vectors of 16; each unit writes
            // only the rows of its head and positions, and `out` holds every
            // row of every head.
            unsafe {
                match wide {
                    true => x86::unit512(job, h, positions, &mut scratch, out),
                    false => x86::unit256(job, h, positions, &mut scratch, out),
                }
            }
        }
    };
    let threads = candle_core::utils::get_num_threads();
    match threads > 1 && units > 1 {
        true => candle_core::utils::barrier_pool().execute_chunked(units, work),
        false => work(0..units),
    }
    Some(out)
}

/// One call's queries, cache and shape.
pub(super) struct Job<'a> {
    pub q: &'a View<'a>,
    pub keys: &'a Cache<'a>,
    pub values: &'a Cache<'a>,
    /// Query heads per key/value head.
    pub rep: usize,
    /// Query positions: row `r · seq + s` is head `r`'s query at position
    /// `s` of the `seq` newest.
    pub seq: usize,
    pub scale: f32,
    /// Positions in the cache.
    pub total: usize,
    pub d: usize,
}

/// A unit of work's buffers, kept for the next one.
struct Scratch {
    /// The unit's query rows, times the scale.
    q: Vec<f32>,
    /// A tile of keys, transposed: value `j` of key `t` at `j · tile + t`,
    /// `tile` being [`TILE_VECTORS`] vectors' lanes.
    keys: Vec<f32>,
    /// A tile of values, a row per key.
    values: Vec<f32>,
    /// One key before it is transposed.
    row: Vec<f32>,
    /// Each query row's running maximum, sum of weights, and weighted sum
    /// of values.
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: Vec<f32>,
}

impl Scratch {
    fn new(rows: usize, d: usize, tile: usize) -> Scratch {
        Scratch {
            q: vec![0.; rows * d],
            keys: vec![0.; d * tile],
            values: vec![0.; tile * d],
            row: vec![0.; d],
            max: vec![0.; rows],
            sum: vec![0.; rows],
            acc: vec![0.; rows * d],
        }
    }
}

mod x86 {
    use std::arch::x86_64::*;

    use super::{Job, Scratch, TILE_VECTORS};
    use crate::engine::kernels::lanes::{exp, max8, sum8};

    /// The operations [`unit`] needs, on vectors of 8 lanes (AVX2) or 16
    /// (AVX-512). Each is inlined into [`unit256`] or [`unit512`], whose
    /// instruction sets they need.
    trait Lanes: Copy {
        const LANES: usize;
        fn zero() -> Self;
        fn splat(x: f32) -> Self;
        /// # Safety
        /// `LANES` values are readable at `p`.
        unsafe fn load(p: *const f32) -> Self;
        /// # Safety
        /// `LANES` values are writable at `p`.
        unsafe fn store(self, p: *mut f32);
        /// `self · b + c`.
        fn mul_add(self, b: Self, c: Self) -> Self;
        fn mul(self, b: Self) -> Self;
        fn add(self, b: Self) -> Self;
        fn sub(self, b: Self) -> Self;
        fn max(self, b: Self) -> Self;
        /// The lanes from `n` on replaced by `fill`.
        fn first(self, n: usize, fill: f32) -> Self;
        fn exp(self) -> Self;
        fn sum(self) -> f32;
        fn largest(self) -> f32;
    }

    // SAFETY (both impls): only `unit256` (AVX2, FMA, F16C) and `unit512`
    // (AVX-512 F besides) call these, each with the vectors its CPU has.
    impl Lanes for __m256 {
        const LANES: usize = 8;
        #[inline(always)]
        fn zero() -> Self {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(self, b, c) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            unsafe { _mm256_mul_ps(self, b) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            unsafe { _mm256_add_ps(self, b) }
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            unsafe { _mm256_sub_ps(self, b) }
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            unsafe { _mm256_max_ps(self, b) }
        }
        #[inline(always)]
        fn first(self, n: usize, fill: f32) -> Self {
            unsafe {
                let lane = _mm256_setr_ps(0., 1., 2., 3., 4., 5., 6., 7.);
                let keep = _mm256_cmp_ps::<_CMP_LT_OQ>(lane, _mm256_set1_ps(n as f32));
                _mm256_blendv_ps(_mm256_set1_ps(fill), self, keep)
            }
        }
        #[inline(always)]
        fn exp(self) -> Self {
            unsafe { exp(self) }
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            unsafe { sum8(self) }
        }
        #[inline(always)]
        fn largest(self) -> f32 {
            unsafe { max8(self) }
        }
    }

    impl Lanes for __m512 {
        const LANES: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(self, b, c) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            unsafe { _mm512_mul_ps(self, b) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            unsafe { _mm512_add_ps(self, b) }
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            unsafe { _mm512_sub_ps(self, b) }
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            unsafe { _mm512_max_ps(self, b) }
        }
        #[inline(always)]
        fn first(self, n: usize, fill: f32) -> Self {
            let keep = (((1u32 << n.min(16)) - 1) & 0xffff) as u16;
            unsafe { _mm512_mask_blend_ps(keep, _mm512_set1_ps(fill), self) }
        }
        /// The 256-bit exponential of each half: the same values as
        /// [`exp`] gives eight lanes.
        #[inline(always)]
        fn exp(self) -> Self {
            unsafe {
                let lo = exp(_mm512_castps512_ps256(self));
                let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(self));
                let hi = exp(_mm256_castpd_ps(hi));
                let joined = _mm512_castps256_ps512(lo);
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castps_pd(joined),
                    _mm256_castps_pd(hi),
                ))
            }
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            unsafe { _mm512_reduce_add_ps(self) }
        }
        #[inline(always)]
        fn largest(self) -> f32 {
            unsafe { _mm512_reduce_max_ps(self) }
        }
    }

    /// [`unit`] in 256-bit vectors.
    ///
    /// # Safety
    /// As [`unit`]'s; the CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn unit256(
        job: &Job,
        h: usize,
        positions: std::ops::Range<usize>,
        s: &mut Scratch,
        out: *mut f32,
    ) {
        unsafe { unit::<__m256>(job, h, positions, s, out) }
    }

    /// [`unit`] in 512-bit vectors.
    ///
    /// # Safety
    /// As [`unit`]'s; the CPU has AVX-512 F besides AVX2, FMA and F16C, and
    /// heads are whole vectors of 16.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn unit512(
        job: &Job,
        h: usize,
        positions: std::ops::Range<usize>,
        s: &mut Scratch,
        out: *mut f32,
    ) {
        unsafe { unit::<__m512>(job, h, positions, s, out) }
    }

    /// Attention of head `h`'s queries at `positions` (of the `seq`
    /// newest), written to their rows of `out`, (kv, rows, d).
    ///
    /// # Safety
    /// `out` holds every row of every head, and no other unit of work
    /// writes these rows meanwhile; `d` is a whole number of vectors `V`;
    /// `s` was made for tiles of [`TILE_VECTORS`] `V`s.
    #[inline(always)]
    unsafe fn unit<V: Lanes>(
        job: &Job,
        h: usize,
        positions: std::ops::Range<usize>,
        s: &mut Scratch,
        out: *mut f32,
    ) {
        let Job {
            q,
            keys,
            values,
            rep,
            seq,
            scale,
            total,
            d,
        } = *job;
        let tile = TILE_VECTORS * V::LANES;
        assert!(s.keys.len() == d * tile && d.is_multiple_of(V::LANES));
        let bs = positions.len();
        let rows = rep * bs;
        // Local row `i` is head `i / bs`'s query at position
        // `positions.start + i % bs`, which sees keys up to `sees(i)`.
        let global = |i: usize| (i / bs) * seq + positions.start + i % bs;
        let sees = |i: usize| total - seq + positions.start + i % bs + 1;
        for i in 0..rows {
            let src = q.row(h, global(i));
            for (o, x) in s.q[i * d..(i + 1) * d].iter_mut().zip(src) {
                *o = x * scale;
            }
        }
        s.max[..rows].fill(f32::NEG_INFINITY);
        s.sum[..rows].fill(0.);
        s.acc[..rows * d].fill(0.);
        let end = sees(bs - 1);
        // A row's weights of one tile (the widest: 16 lanes).
        let mut weights = [0f32; TILE_VECTORS * 16];
        let p = &mut weights[..tile];
        for t0 in (0..end).step_by(tile) {
            let tl = tile.min(end - t0);
            for t in 0..tile {
                match t < tl {
                    true => keys.widen(h, t0 + t, &mut s.row),
                    false => s.row.fill(0.),
                }
                for (j, &x) in s.row.iter().enumerate() {
                    s.keys[j * tile + t] = x;
                }
            }
            for t in 0..tl {
                values.widen(h, t0 + t, &mut s.values[t * d..(t + 1) * d]);
            }
            // Rows in pairs: each key vector loaded serves two rows, and
            // eight chains of multiply-adds run side by side, not four.
            for i in (0..rows).step_by(2) {
                let pair = (i + 1 < rows) as usize + 1;
                if (i..i + pair).all(|i| sees(i) <= t0) {
                    continue;
                }
                let mut a = [[V::zero(); TILE_VECTORS]; 2];
                // SAFETY: rows `i` and `i + pair - 1` of `d` values are in
                // `s.q`, `d` rows of `tile` keys in `s.keys`.
                unsafe {
                    let q0 = s.q.as_ptr().add(i * d);
                    let q1 = s.q.as_ptr().add((i + pair - 1) * d);
                    for j in 0..d {
                        let x0 = V::splat(*q0.add(j));
                        let x1 = V::splat(*q1.add(j));
                        let k = s.keys.as_ptr().add(j * tile);
                        let [a0, a1] = &mut a;
                        for (v, (a0, a1)) in a0.iter_mut().zip(a1).enumerate() {
                            let kv = V::load(k.add(V::LANES * v));
                            *a0 = x0.mul_add(kv, *a0);
                            *a1 = x1.mul_add(kv, *a1);
                        }
                    }
                }
                for (r, scores) in a.iter().enumerate().take(pair) {
                    let seen = sees(i + r);
                    if seen > t0 {
                        // SAFETY: row `i + r` and the tile are in `s`.
                        unsafe { absorb(s, i + r, *scores, tl.min(seen - t0), d, p) };
                    }
                }
            }
        }
        for i in 0..rows {
            let inv = 1. / s.sum[i];
            // SAFETY: as the caller promises, `out` holds this row.
            let dst = unsafe { out.add((h * rep * seq + global(i)) * d) };
            for j in 0..d {
                // SAFETY: as above.
                unsafe { *dst.add(j) = s.acc[i * d + j] * inv };
            }
        }
    }

    /// `acc[..W vectors] += Σ over the tile's first `n` keys `t` of `p[t]`
    /// × value row `t` (`d` apart from `values`). With four vectors or
    /// fewer, even and odd keys go to separate sums, added at the end: a
    /// multiply-add waits for the one before it in its chain, and four
    /// chains would leave the units idle.
    ///
    /// # Safety
    /// `W` vectors are readable and writable at `acc`, and readable at
    /// `values + t · d` for each `t < n`; `p` holds `n` weights.
    #[inline(always)]
    unsafe fn weigh_values<V: Lanes, const W: usize>(
        acc: *mut f32,
        values: *const f32,
        p: &[f32],
        n: usize,
        d: usize,
    ) {
        let two = W <= 4;
        assert!(p.len() >= n);
        // SAFETY: as the caller promises.
        unsafe {
            let mut o = [V::zero(); W];
            let mut odd = [V::zero(); W];
            for (v, o) in o.iter_mut().enumerate() {
                *o = V::load(acc.add(V::LANES * v));
            }
            let step = |o: &mut [V; W], t: usize| {
                let (pt, vt) = (V::splat(p[t]), values.add(t * d));
                for (v, o) in o.iter_mut().enumerate() {
                    *o = pt.mul_add(V::load(vt.add(V::LANES * v)), *o);
                }
            };
            let mut t = 0;
            while two && t + 2 <= n {
                step(&mut o, t);
                step(&mut odd, t + 1);
                t += 2;
            }
            for t in t..n {
                step(&mut o, t);
            }
            for (v, (o, odd)) in o.iter().zip(&odd).enumerate() {
                let o = match two {
                    true => o.add(*odd),
                    false => *o,
                };
                o.store(acc.add(V::LANES * v));
            }
        }
    }

    /// Takes row `i`'s scores against the tile's first `n` keys into its
    /// running maximum, sum of weights and weighted sum of values.
    ///
    /// # Safety
    /// Row `i` and the tile's `n` values are in `s`; `p` holds a tile.
    #[inline(always)]
    unsafe fn absorb<V: Lanes>(
        s: &mut Scratch,
        i: usize,
        mut a: [V; TILE_VECTORS],
        n: usize,
        d: usize,
        p: &mut [f32],
    ) {
        // Keys past what the row sees weigh nothing.
        let seen = |v: usize| n.saturating_sub(V::LANES * v);
        let mut top = V::splat(f32::NEG_INFINITY);
        for (v, a) in a.iter_mut().enumerate() {
            *a = a.first(seen(v), f32::NEG_INFINITY);
            top = top.max(*a);
        }
        let old = s.max[i];
        let max = old.max(top.largest());
        // SAFETY (all pointers below): row `i`'s `d` values are in
        // `s.acc`, the tile's `n` rows of `d` in `s.values`, a tile in `p`.
        unsafe {
            if max > old {
                // Earlier weights were taken against a smaller maximum.
                let c = (old - max).exp();
                s.sum[i] *= c;
                let cv = V::splat(c);
                let acc = s.acc.as_mut_ptr().add(i * d);
                for j in (0..d).step_by(V::LANES) {
                    cv.mul(V::load(acc.add(j))).store(acc.add(j));
                }
                s.max[i] = max;
            }
            let mv = V::splat(max);
            let mut total = V::zero();
            for (v, a) in a.iter().enumerate() {
                let w = a.sub(mv).exp().first(seen(v), 0.);
                total = total.add(w);
                w.store(p.as_mut_ptr().add(V::LANES * v));
            }
            s.sum[i] += total.sum();
            // The weighted values, up to eight vectors of the row's values
            // at a time in registers.
            let acc = s.acc.as_mut_ptr().add(i * d);
            for c in (0..d).step_by(8 * V::LANES) {
                let (acc, values) = (acc.add(c), s.values.as_ptr().add(c));
                match (d - c).min(8 * V::LANES) / V::LANES {
                    8 => weigh_values::<V, 8>(acc, values, p, n, d),
                    7 => weigh_values::<V, 7>(acc, values, p, n, d),
                    6 => weigh_values::<V, 6>(acc, values, p, n, d),
                    5 => weigh_values::<V, 5>(acc, values, p, n, d),
                    4 => weigh_values::<V, 4>(acc, values, p, n, d),
                    3 => weigh_values::<V, 3>(acc, values, p, n, d),
                    2 => weigh_values::<V, 2>(acc, values, p, n, d),
                    _ => weigh_values::<V, 1>(acc, values, p, n, d),
                }
            }
        }
    }
}

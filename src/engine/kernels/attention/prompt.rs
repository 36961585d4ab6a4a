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
//! polynomial, not one library call per score.

use super::{Cache, View};

/// Query positions per unit of work.
const BLOCK: usize = 16;

/// Key positions per tile: four vectors of eight scores per query row.
const TILE: usize = 32;

/// `softmax(q·kᵀ · scale + causal mask) · v` as [`super::attend`] computes
/// it, for many rows, over `kv` key/value heads: (kv, rep · seq, d) values,
/// or `None` where this CPU has no vector kernel for it or rows are not a
/// whole number of 8 values.
pub(super) fn attend(job: &Job, kv: usize) -> Option<Vec<f32>> {
    let (seq, d) = (job.seq, job.d);
    if crate::engine::kernels::isa() != crate::engine::kernels::Isa::Scalar && d.is_multiple_of(8) {
        let blocks = seq.div_ceil(BLOCK);
        let units = kv * blocks;
        let mut out = vec![0f32; kv * job.rep * seq * d];
        let dst = out.as_mut_ptr() as usize;
        let work = |units: std::ops::Range<usize>| {
            let mut scratch = Scratch::new(job.rep * BLOCK, d);
            for u in units {
                // The last blocks see the most keys: they go first, so
                // that no thread is left with a long one at the end.
                let (h, b) = (u % kv, blocks - 1 - u / kv);
                let positions = b * BLOCK..seq.min((b + 1) * BLOCK);
                // SAFETY: the CPU has AVX2, FMA and F16C; each unit writes
                // only the rows of its head and positions, and `out` holds
                // every row of every head.
                unsafe { x86::unit(job, h, positions, &mut scratch, dst as *mut f32) };
            }
        };
        let threads = candle_core::utils::get_num_threads();
        match threads > 1 && units > 1 {
            true => candle_core::utils::barrier_pool().execute_chunked(units, work),
            false => work(0..units),
        }
        return Some(out);
    }
    None
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
    /// A tile of keys, transposed: value `j` of key `t` at `j · TILE + t`.
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
    fn new(rows: usize, d: usize) -> Scratch {
        Scratch {
            q: vec![0.; rows * d],
            keys: vec![0.; d * TILE],
            values: vec![0.; TILE * d],
            row: vec![0.; d],
            max: vec![0.; rows],
            sum: vec![0.; rows],
            acc: vec![0.; rows * d],
        }
    }
}

mod x86 {
    use std::arch::x86_64::*;

    use super::{Job, Scratch, TILE};
    use crate::engine::kernels::lanes::{exp, max8, sum8};

    /// Attention of head `h`'s queries at `positions` (of the `seq`
    /// newest), written to their rows of `out`, (kv, rows, d).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `out` holds every row of every head,
    /// and no other unit of work writes these rows meanwhile.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn unit(
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
        let mut p = [0f32; TILE];
        for t0 in (0..end).step_by(TILE) {
            let tl = TILE.min(end - t0);
            for t in 0..TILE {
                match t < tl {
                    true => keys.widen(h, t0 + t, &mut s.row),
                    false => s.row.fill(0.),
                }
                for (j, &x) in s.row.iter().enumerate() {
                    s.keys[j * TILE + t] = x;
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
                let mut a = [[_mm256_setzero_ps(); 4]; 2];
                let q0 = s.q.as_ptr().add(i * d);
                let q1 = s.q.as_ptr().add((i + pair - 1) * d);
                for j in 0..d {
                    let x0 = _mm256_broadcast_ss(&*q0.add(j));
                    let x1 = _mm256_broadcast_ss(&*q1.add(j));
                    let k = s.keys.as_ptr().add(j * TILE);
                    let [a0, a1] = &mut a;
                    for (v, (a0, a1)) in a0.iter_mut().zip(a1).enumerate() {
                        let kv = _mm256_loadu_ps(k.add(8 * v));
                        *a0 = _mm256_fmadd_ps(x0, kv, *a0);
                        *a1 = _mm256_fmadd_ps(x1, kv, *a1);
                    }
                }
                for (r, scores) in a.iter().enumerate().take(pair) {
                    let seen = sees(i + r);
                    if seen > t0 {
                        absorb(s, i + r, *scores, tl.min(seen - t0), d, &mut p);
                    }
                }
            }
        }
        for i in 0..rows {
            let inv = 1. / s.sum[i];
            let dst = out.add((h * rep * seq + global(i)) * d);
            for j in 0..d {
                *dst.add(j) = s.acc[i * d + j] * inv;
            }
        }
    }

    /// Takes row `i`'s scores against the tile's first `n` keys into its
    /// running maximum, sum of weights and weighted sum of values.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; row `i` and the tile's `n` values
    /// are in `s`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn absorb(
        s: &mut Scratch,
        i: usize,
        mut a: [__m256; 4],
        n: usize,
        d: usize,
        p: &mut [f32; TILE],
    ) {
        // Keys past what the row sees weigh nothing.
        let lane = _mm256_setr_ps(0., 1., 2., 3., 4., 5., 6., 7.);
        let nv = _mm256_set1_ps(n as f32);
        let mut seen = [_mm256_setzero_ps(); 4];
        let mut top = _mm256_set1_ps(f32::NEG_INFINITY);
        for v in 0..4 {
            let idx = _mm256_add_ps(lane, _mm256_set1_ps(8. * v as f32));
            seen[v] = _mm256_cmp_ps::<_CMP_LT_OQ>(idx, nv);
            a[v] = _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), a[v], seen[v]);
            top = _mm256_max_ps(top, a[v]);
        }
        let old = s.max[i];
        let max = old.max(max8(top));
        // SAFETY (all pointers below): row `i`'s `d` values are in
        // `s.acc`, the tile's `n` rows of `d` in `s.values`.
        unsafe {
            if max > old {
                // Earlier weights were taken against a smaller maximum.
                let c = (old - max).exp();
                s.sum[i] *= c;
                let cv = _mm256_set1_ps(c);
                let acc = s.acc.as_mut_ptr().add(i * d);
                for j in (0..d).step_by(8) {
                    _mm256_storeu_ps(acc.add(j), _mm256_mul_ps(cv, _mm256_loadu_ps(acc.add(j))));
                }
                s.max[i] = max;
            }
            let mv = _mm256_set1_ps(max);
            let mut total = _mm256_setzero_ps();
            for v in 0..4 {
                let w = _mm256_and_ps(exp(_mm256_sub_ps(a[v], mv)), seen[v]);
                total = _mm256_add_ps(total, w);
                _mm256_storeu_ps(p.as_mut_ptr().add(8 * v), w);
            }
            s.sum[i] += sum8(total);
            // The weighted values, 64 of the row's values at a time in
            // registers.
            let acc = s.acc.as_mut_ptr().add(i * d);
            for c in (0..d).step_by(64) {
                let w = (d - c).min(64) / 8;
                let mut o = [_mm256_setzero_ps(); 8];
                for (v, o) in o.iter_mut().enumerate().take(w) {
                    *o = _mm256_loadu_ps(acc.add(c + 8 * v));
                }
                for (t, &pt) in p.iter().enumerate().take(n) {
                    let pt = _mm256_set1_ps(pt);
                    let vt = s.values.as_ptr().add(t * d + c);
                    for (v, o) in o.iter_mut().enumerate().take(w) {
                        *o = _mm256_fmadd_ps(pt, _mm256_loadu_ps(vt.add(8 * v)), *o);
                    }
                }
                for (v, o) in o.iter().enumerate().take(w) {
                    _mm256_storeu_ps(acc.add(c + 8 * v), *o);
                }
            }
        }
    }
}

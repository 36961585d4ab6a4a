//! Attention of a few query rows over the key/value cache: the decode step.
//!
//! candle computes it as two batched matrix products of a handful of rows,
//! which its matrix library runs on one thread: with a 900-position cache
//! that took 42% of the main thread's decode time for Qwen3-1.7B while the
//! other core waited. Here the key/value heads are shared out between the
//! threads, and each head's keys and values are read once for all the query
//! rows that use them. Where the heads do not share out evenly (three heads
//! on two threads), each head's positions are cut in parts as well, whose
//! softmaxes are merged after: the cache is as much to read per token as a
//! tenth of a small model's weights.

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor};

/// Most query rows per key/value head this path takes: beyond that (long
/// prompts) the products are large enough for the matrix library.
pub const MAX_ROWS: usize = 16;

/// Multiply-adds below which one thread does all the heads.
const PARALLEL_WORK: usize = 1 << 18;

/// Fewest positions in a part of a head's cache.
const MIN_PART: usize = 64;

/// A strided view of one (1, heads, positions, d) f32 tensor.
struct View<'a> {
    data: &'a [f32],
    start: usize,
    head_stride: usize,
    d: usize,
}

impl<'a> View<'a> {
    fn of(data: &'a [f32], layout: &Layout) -> Option<Self> {
        let (dims, stride) = (layout.dims(), layout.stride());
        let [1, _, _, d] = *dims else { return None };
        (stride[3] == 1 && stride[2] == d).then_some(View {
            data,
            start: layout.start_offset(),
            head_stride: stride[1],
            d,
        })
    }

    /// Row `t` of head `h`.
    fn row(&self, h: usize, t: usize) -> &'a [f32] {
        let at = self.start + h * self.head_stride + t * self.d;
        &self.data[at..at + self.d]
    }
}

fn f32_slice(s: &Storage) -> Option<&[f32]> {
    match s {
        Storage::Cpu(CpuStorage::F32(v)) => Some(v),
        _ => None,
    }
}

/// `softmax(q·kᵀ · scale + causal mask) · v` per key/value head, for
/// `q` (1, kv, rows, d) whose row `r · seq + s` is query `s` of the `seq`
/// newest positions, against `k`, `v` (1, kv, total, d). `None` when the
/// tensors are not f32 on the CPU in that layout, for the caller to compute
/// it the general way.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq: usize,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    attend_in(q, k, v, seq, scale, None)
}

/// [`attend`], with each head's positions cut in `parts` when given.
fn attend_in(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seq: usize,
    scale: f32,
    parts: Option<usize>,
) -> candle_core::Result<Option<Tensor>> {
    let (b, kv, rows, d) = q.dims4()?;
    let total = k.dim(2)?;
    if b != 1 || rows > MAX_ROWS || seq == 0 || rows % seq != 0 || seq > total {
        return Ok(None);
    }
    if q.dtype() != DType::F32 || !q.device().is_cpu() {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Some(qd), Some(kd), Some(vd)) = (f32_slice(&qs), f32_slice(&ks), f32_slice(&vs)) else {
        return Ok(None);
    };
    let (Some(qv), Some(kv_), Some(vv)) = (View::of(qd, ql), View::of(kd, kl), View::of(vd, vl))
    else {
        return Ok(None);
    };
    if kv_.d != d || vv.d != d || k.dim(1)? != kv || v.dim(1)? != kv || v.dim(2)? != total {
        return Ok(None);
    }
    // Waking the other threads costs more than a small cache takes.
    let threads = match kv * rows * total * d < PARALLEL_WORK {
        true => 1,
        false => candle_core::utils::get_num_threads(),
    };
    let parts = parts.unwrap_or_else(|| split(kv, threads, total));
    let (qv, kv_, vv) = (&qv, &kv_, &vv);
    let out = in_parts(kv, rows, d, total, parts, threads > 1, |h, positions| {
        Head {
            q: qv,
            k: kv_,
            v: vv,
            h,
            rows,
            seq,
            scale,
            total,
            positions,
        }
    });
    Ok(Some(Tensor::from_vec(out, (1, kv, rows, d), &Device::Cpu)?))
}

/// Parts to cut each head's positions in, so that `kv × parts` units of
/// work share out evenly between `threads`, none under [`MIN_PART`]
/// positions.
fn split(kv: usize, threads: usize, total: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let even = threads / gcd(kv, threads).max(1);
    even.min(total / MIN_PART).max(1)
}

/// Attention of every head, its positions cut in `parts`: each unit of work
/// (a head's part, made by `head`) gives its rows' weighted values with its
/// own maximum score and sum of weights, and the parts of a head are merged
/// into its rows' output, `kv × rows × d` values.
fn in_parts<'a>(
    kv: usize,
    rows: usize,
    d: usize,
    total: usize,
    parts: usize,
    parallel: bool,
    head: impl Fn(usize, std::ops::Range<usize>) -> Head<'a> + Sync,
) -> Vec<f32> {
    let units = kv * parts;
    let len = total.div_ceil(parts);
    let mut partial = vec![0f32; units * rows * d];
    let mut stats = vec![(f32::NEG_INFINITY, 0f32); units * rows];
    let (dst, sdst) = (partial.as_mut_ptr() as usize, stats.as_mut_ptr() as usize);
    let work = |units: std::ops::Range<usize>| {
        let mut scores = vec![0f32; rows * len];
        for u in units {
            // SAFETY: unit `u` owns rows `u * rows..(u + 1) * rows` of
            // `partial` and `stats`, and only this unit of work has it.
            let (out, stats) = unsafe {
                (
                    std::slice::from_raw_parts_mut((dst as *mut f32).add(u * rows * d), rows * d),
                    std::slice::from_raw_parts_mut((sdst as *mut (f32, f32)).add(u * rows), rows),
                )
            };
            let (h, p) = (u / parts, u % parts);
            let job = head(h, total.min(p * len)..total.min((p + 1) * len));
            #[cfg(glot_x86)]
            if super::isa() != super::Isa::Scalar {
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { x86::head(&job, &mut scores, out, stats) };
                continue;
            }
            job.run(&mut scores, out, stats, dot, axpy);
        }
    };
    if parallel {
        candle_core::utils::barrier_pool().execute_chunked(units, work);
    } else {
        work(0..units);
    }
    // softmax over all positions = the parts' weights rescaled to the
    // largest maximum. With one part the scale is exactly 1.
    let mut out = vec![0f32; kv * rows * d];
    for h in 0..kv {
        for i in 0..rows {
            let unit = |p: usize| (h * parts + p) * rows + i;
            let max = (0..parts)
                .map(|p| stats[unit(p)].0)
                .fold(f32::NEG_INFINITY, f32::max);
            let o = &mut out[(h * rows + i) * d..(h * rows + i + 1) * d];
            let mut sum = 0.0;
            for p in 0..parts {
                let (m, s) = stats[unit(p)];
                if s == 0.0 {
                    continue;
                }
                let w = (m - max).exp();
                sum += s * w;
                let part = &partial[unit(p) * d..(unit(p) + 1) * d];
                o.iter_mut().zip(part).for_each(|(o, x)| *o += x * w);
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|o| *o *= inv);
        }
    }
    out
}

/// One key/value head's share of the work.
struct Head<'a> {
    q: &'a View<'a>,
    k: &'a View<'a>,
    v: &'a View<'a>,
    h: usize,
    rows: usize,
    seq: usize,
    scale: f32,
    /// Positions of the cache in use.
    total: usize,
    /// Those this unit of work attends to.
    positions: std::ops::Range<usize>,
}

impl Head<'_> {
    /// Scores of every row over this unit's positions, their exponentials
    /// less the rows' largest (`stats`: that maximum and the sum of the
    /// weights), and the weighted sums of values (`out`, not yet divided).
    /// Row `i` is query `i % seq`, which sees positions up to
    /// `total - seq + i % seq`. `dot` and `axpy` are the vector loops, for
    /// the instruction set the caller was compiled for.
    #[inline(always)]
    fn run(
        &self,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
        dot: impl Fn(&[f32], &[f32]) -> f32,
        axpy: impl Fn(f32, &[f32], &mut [f32]),
    ) {
        let Head {
            q,
            k,
            v,
            h,
            rows,
            seq,
            scale,
            total,
            ..
        } = *self;
        let (from, to, d) = (self.positions.start, self.positions.end, q.d);
        let len = to - from;
        // The end of the positions row `i` sees in this part.
        let visible = |i: usize| (total - seq + i % seq + 1).clamp(from, to);
        for t in from..to {
            let kt = k.row(h, t);
            for i in 0..rows {
                if t < visible(i) {
                    scores[i * len + t - from] = dot(q.row(h, i), kt) * scale;
                }
            }
        }
        for (i, stat) in stats.iter_mut().enumerate().take(rows) {
            let s = &mut scores[i * len..i * len + visible(i) - from];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for x in s.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            *stat = (max, sum);
        }
        for t in from..to {
            let vt = v.row(h, t);
            for i in 0..rows {
                if t < visible(i) {
                    axpy(scores[i * len + t - from], vt, &mut out[i * d..(i + 1) * d]);
                }
            }
        }
    }
}

/// `a · b` with eight partial sums, which the compiler keeps in vector
/// registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a · x`.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(glot_x86)]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::Head::run`] with 256-bit fused multiply-adds.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head(
        job: &super::Head,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
    ) {
        job.run(
            scores,
            out,
            stats,
            |a, b| dot(a, b),
            |a, x, y| axpy(a, x, y),
        );
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: every load reads 8 values below `n`.
        unsafe {
            while i + 16 <= n {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
                s1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    s1,
                );
                i += 16;
            }
            if i + 8 <= n {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
                i += 8;
            }
        }
        let s = _mm256_add_ps(s0, s1);
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
            + a[i..n]
                .iter()
                .zip(&b[i..n])
                .map(|(x, y)| x * y)
                .sum::<f32>()
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        // SAFETY: every load and store touches 8 values below `n`.
        unsafe {
            while i + 8 <= n {
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(
                    p,
                    _mm256_fmadd_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)),
                );
                i += 8;
            }
        }
        for (y, x) in y[i..n].iter_mut().zip(&x[i..n]) {
            *y += a * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The general computation, as the decoder does it with candle.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, seq: usize, scale: f64) -> Tensor {
        let (_, kv, rows, _) = q.dims4().unwrap();
        let total = k.dim(2).unwrap();
        let rep = rows / seq;
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let mask: Vec<f32> = (0..seq)
            .flat_map(|i| {
                (0..total).map(move |j| {
                    if j <= total - seq + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (seq, total), &Device::Cpu).unwrap();
        let scores = scores
            .reshape((1, kv, rep, seq, total))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap()
            .reshape((1, kv, rows, total))
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs.matmul(&v.contiguous().unwrap()).unwrap()
    }

    #[test]
    fn equals_the_general_computation_over_a_strided_cache() {
        for (kv, rep, seq, total, d) in [
            (2, 2, 1, 37, 16),
            (3, 1, 1, 1, 8),
            (2, 4, 3, 20, 12),
            (3, 3, 1, 300, 64),
        ] {
            let q = random((1, kv, rep * seq, d), 1);
            // The cache holds more positions than are in use, as the
            // decoder's does: keys and values are a narrowed view of it.
            let k = random((1, kv, total + 5, d), 2)
                .narrow(2, 0, total)
                .unwrap();
            let v = random((1, kv, total + 5, d), 3)
                .narrow(2, 0, total)
                .unwrap();
            let scale = 1.0 / (d as f64).sqrt();
            let want = reference(&q, &k, &v, seq, scale);
            // Each head's positions whole, or cut in parts whose softmaxes
            // are merged (a part may hold no position a row sees).
            for parts in [None, Some(1), Some(2), Some(3), Some(7)] {
                let got = attend_in(&q, &k, &v, seq, scale as f32, parts)
                    .unwrap()
                    .unwrap();
                let diff = (got - &want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "kv {kv} rep {rep} seq {seq} {parts:?}: {diff}");
            }
        }
    }

    #[test]
    fn heads_share_out_evenly_between_threads() {
        // Three heads on two threads: each cut in two.
        assert_eq!(split(3, 2, 600), 2);
        assert_eq!(split(8, 2, 600), 1);
        assert_eq!(split(2, 16, 600), 8);
        // Never parts under the least size.
        assert_eq!(split(3, 2, 100), 1);
        assert_eq!(split(3, 1, 600), 1);
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let q = random((1, 2, MAX_ROWS + 1, 8), 1);
        let k = random((1, 2, 40, 8), 2);
        assert!(attend(&q, &k, &k, 1, 1.0).unwrap().is_none());
        let q = random((1, 2, 2, 8), 1).to_dtype(DType::F16).unwrap();
        let k = k.to_dtype(DType::F16).unwrap();
        assert!(attend(&q, &k, &k, 1, 1.0).unwrap().is_none());
    }
}

//! Attention of a few query rows over the key/value cache: the decode step.
//!
//! candle computes it as two batched matrix products of a handful of rows,
//! which its matrix library runs on one thread: with a 900-position cache
//! that took 42% of the main thread's decode time for Qwen3-1.7B while the
//! other core waited. Here the key/value heads are shared out between the
//! threads, and each head's keys and values are read once for all the query
//! rows that use them. Where the heads do not share out evenly (three heads
//! on two threads), each head's positions are cut in parts as well, whose
//! softmaxes are merged after: at a few hundred positions the cache is as
//! much to read per token as a tenth of a small model's weights (f32) or a
//! twentieth (f16, as quantized models keep it; widened as it is read).

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor};

#[cfg(glot_x86)]
mod prompt;

/// Most query rows per key/value head the decode kernel takes: beyond that
/// (a prompt's positions) [`prompt`] works through them in blocks.
pub const MAX_ROWS: usize = 16;

/// Multiply-adds below which one thread does all the heads.
const PARALLEL_WORK: usize = 1 << 18;

/// Fewest positions in a part of a head's cache.
const MIN_PART: usize = 64;

/// A strided view of one (1, heads, positions, d) tensor.
struct View<'a, T = f32> {
    data: &'a [T],
    start: usize,
    head_stride: usize,
    d: usize,
}

impl<'a, T> View<'a, T> {
    fn of(data: &'a [T], layout: &Layout) -> Option<Self> {
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
    fn row(&self, h: usize, t: usize) -> &'a [T] {
        let at = self.start + h * self.head_stride + t * self.d;
        &self.data[at..at + self.d]
    }
}

/// A key/value cache as it is kept: f32, f16 (half the bytes to read per
/// token, as llama.cpp keeps it) or Q8_0 rows of bytes ([`super::kv_q8`]),
/// widened as the kernel reads it.
enum Cache<'a> {
    F32(View<'a>),
    F16(View<'a, half::f16>),
    Q8(View<'a, u8>),
}

impl<'a> Cache<'a> {
    fn of(s: &'a Storage, layout: &Layout) -> Option<Self> {
        match s {
            Storage::Cpu(CpuStorage::F32(v)) => View::of(v, layout).map(Cache::F32),
            Storage::Cpu(CpuStorage::F16(v)) => View::of(v, layout).map(Cache::F16),
            Storage::Cpu(CpuStorage::U8(v)) => View::of(v, layout).map(Cache::Q8),
            _ => None,
        }
    }

    /// Row `t` of head `h` as f32 values.
    #[cfg(glot_x86)]
    fn widen(&self, h: usize, t: usize, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        match self {
            Cache::F32(v) => out.copy_from_slice(v.row(h, t)),
            Cache::F16(v) => v.row(h, t).convert_to_f32_slice(out),
            Cache::Q8(v) => super::kv_q8::widen(v.row(h, t), out),
        }
    }

    /// Values per row.
    fn d(&self) -> usize {
        match self {
            Cache::F32(v) => v.d,
            Cache::F16(v) => v.d,
            Cache::Q8(v) => v.d / super::kv_q8::BLOCK_BYTES * super::formats::QK,
        }
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
/// newest positions, against `k`, `v` (1, kv, total, d), f32 or f16.
/// `None` when the tensors are not so on the CPU in that layout, for the
/// caller to compute
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
    if b != 1 || seq == 0 || rows % seq != 0 || seq > total {
        return Ok(None);
    }
    if q.dtype() != DType::F32 || !q.device().is_cpu() {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let Some(qv) = f32_slice(&qs).and_then(|qd| View::of(qd, ql)) else {
        return Ok(None);
    };
    let (Some(keys), Some(values)) = (Cache::of(&ks, kl), Cache::of(&vs, vl)) else {
        return Ok(None);
    };
    if keys.d() != d || values.d() != d || k.dim(1)? != kv || v.dim(1)? != kv || v.dim(2)? != total
    {
        return Ok(None);
    }
    if rows > MAX_ROWS {
        #[cfg(not(glot_x86))]
        return Ok(None);
        #[cfg(glot_x86)]
        let job = prompt::Job {
            q: &qv,
            keys: &keys,
            values: &values,
            rep: rows / seq,
            seq,
            scale,
            total,
            d,
        };
        #[cfg(glot_x86)]
        return Ok(match prompt::attend(&job, kv) {
            Some(out) => Some(Tensor::from_vec(out, (1, kv, rows, d), &Device::Cpu)?),
            None => None,
        });
    }
    // Waking the other threads costs more than a small cache takes.
    let threads = match kv * rows * total * d < PARALLEL_WORK {
        true => 1,
        false => candle_core::utils::get_num_threads(),
    };
    let parts = parts.unwrap_or_else(|| split(kv, threads, total));
    let query = Query {
        q: &qv,
        rows,
        seq,
        scale,
        total,
    };
    let unit = |h: usize,
                positions: std::ops::Range<usize>,
                scores: &mut [f32],
                o: &mut [f32],
                stats: &mut [(f32, f32)]| {
        match (&keys, &values) {
            (Cache::F32(k), Cache::F32(v)) => {
                query.head(k, v, h, positions).dispatch(scores, o, stats)
            }
            (Cache::F16(k), Cache::F16(v)) => {
                query.head(k, v, h, positions).dispatch(scores, o, stats)
            }
            (Cache::Q8(k), Cache::Q8(v)) => {
                query.head(k, v, h, positions).dispatch_q8(scores, o, stats)
            }
            _ => unreachable!("keys and values are kept alike"),
        }
    };
    if !matches!(
        (&keys, &values),
        (Cache::F32(_), Cache::F32(_))
            | (Cache::F16(_), Cache::F16(_))
            | (Cache::Q8(_), Cache::Q8(_))
    ) {
        return Ok(None);
    }
    let out = in_parts(kv, rows, d, total, parts, threads > 1, unit);
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
/// (`unit(head, positions, scores, out, stats)`) gives its rows' weighted
/// values with its own maximum score and sum of weights, and the parts of a
/// head are merged into its rows' output, `kv × rows × d` values.
fn in_parts(
    kv: usize,
    rows: usize,
    d: usize,
    total: usize,
    parts: usize,
    parallel: bool,
    unit: impl Fn(usize, std::ops::Range<usize>, &mut [f32], &mut [f32], &mut [(f32, f32)]) + Sync,
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
            let positions = total.min(p * len)..total.min((p + 1) * len);
            unit(h, positions, &mut scores, out, stats);
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

/// A value of the key/value cache: f32, or f16 widened as it is read.
trait Widen: Copy + Sync {
    fn widen(self) -> f32;
}

impl Widen for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for half::f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl<T: Widen> Head<'_, T> {
    /// Runs this unit of work with the vector loops this CPU has.
    fn dispatch(&self, scores: &mut [f32], out: &mut [f32], stats: &mut [(f32, f32)]) {
        #[cfg(glot_x86)]
        if super::isa() == super::Isa::Vnni
            && self.q.d.is_multiple_of(16)
            && self.q.d <= x86::WIDE_D
        {
            // SAFETY: the CPU has AVX-512 F, AVX2, FMA and F16C; the head
            // is whole vectors of 16, at most `WIDE_D`.
            unsafe { x86::head512(self, scores, out, stats) };
            return;
        }
        #[cfg(glot_x86)]
        if super::isa() != super::Isa::Scalar {
            // SAFETY: the CPU has AVX2, FMA and F16C.
            unsafe { x86::head(self, scores, out, stats) };
            return;
        }
        #[cfg(glot_neon)]
        if super::isa() != super::Isa::Scalar {
            neon::head(self, scores, out, stats);
            return;
        }
        self.run(scores, out, stats, dot, axpy, Head::weigh);
    }
}

impl Head<'_, u8> {
    /// [`Head::dispatch`] for a Q8_0 cache, whose rows are blocks of bytes.
    fn dispatch_q8(&self, scores: &mut [f32], out: &mut [f32], stats: &mut [(f32, f32)]) {
        use super::kv_q8;
        #[cfg(glot_x86)]
        if super::isa() != super::Isa::Scalar {
            // SAFETY: the CPU has AVX2, FMA and F16C.
            unsafe { x86::head(self, scores, out, stats) };
            return;
        }
        self.run(scores, out, stats, kv_q8::dot, kv_q8::axpy, Head::weigh);
    }
}

/// What every unit of work of one call shares.
#[derive(Clone, Copy)]
struct Query<'a> {
    q: &'a View<'a>,
    rows: usize,
    seq: usize,
    scale: f32,
    total: usize,
}

impl<'a> Query<'a> {
    /// The unit of work of head `h` over `positions` of `k` and `v`.
    fn head<T>(
        self,
        k: &'a View<'a, T>,
        v: &'a View<'a, T>,
        h: usize,
        positions: std::ops::Range<usize>,
    ) -> Head<'a, T> {
        let Query {
            q,
            rows,
            seq,
            scale,
            total,
        } = self;
        Head {
            q,
            k,
            v,
            h,
            rows,
            seq,
            scale,
            total,
            positions,
        }
    }
}

/// One key/value head's share of the work.
struct Head<'a, T = f32> {
    q: &'a View<'a>,
    k: &'a View<'a, T>,
    v: &'a View<'a, T>,
    h: usize,
    rows: usize,
    seq: usize,
    scale: f32,
    /// Positions of the cache in use.
    total: usize,
    /// Those this unit of work attends to.
    positions: std::ops::Range<usize>,
}

impl<T> Head<'_, T> {
    /// The end of the positions row `i` sees in this unit.
    fn visible(&self, i: usize) -> usize {
        let (from, to) = (self.positions.start, self.positions.end);
        (self.total - self.seq + i % self.seq + 1).clamp(from, to)
    }

    /// Turns each row's scores (`len` = this unit's positions apart) into
    /// their exponentials less the row's largest, and gives `stats` that
    /// maximum and the sum. Scores of positions a row does not see are left
    /// as they are.
    fn weigh(&self, scores: &mut [f32], stats: &mut [(f32, f32)]) {
        let (from, len) = (self.positions.start, self.positions.len());
        for (i, stat) in stats.iter_mut().enumerate().take(self.rows) {
            let s = &mut scores[i * len..i * len + self.visible(i) - from];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for x in s.iter_mut() {
                *x = (*x - max).exp();
                sum += *x;
            }
            *stat = (max, sum);
        }
    }

    /// Scores of every row over this unit's positions, their exponentials
    /// less the rows' largest (`stats`: that maximum and the sum of the
    /// weights), and the weighted sums of values (`out`, not yet divided).
    /// Row `i` is query `i % seq`, which sees positions up to
    /// `total - seq + i % seq`. `dot`, `axpy` and `weigh` ([`Head::weigh`]
    /// or a vector form of it) are the loops for the instruction set the
    /// caller was compiled for.
    #[inline(always)]
    fn run(
        &self,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
        dot: impl Fn(&[f32], &[T]) -> f32,
        axpy: impl Fn(f32, &[T], &mut [f32]),
        weigh: impl Fn(&Self, &mut [f32], &mut [(f32, f32)]),
    ) {
        let Head {
            q,
            k,
            v,
            h,
            rows,
            scale,
            ..
        } = *self;
        let (from, to, d) = (self.positions.start, self.positions.end, q.d);
        let len = to - from;
        let visible = |i: usize| self.visible(i);
        for t in from..to {
            let kt = k.row(h, t);
            for i in 0..rows {
                if t < visible(i) {
                    scores[i * len + t - from] = dot(q.row(h, i), kt) * scale;
                }
            }
        }
        weigh(self, scores, stats);
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
fn dot<T: Widen>(a: &[f32], b: &[T]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y.widen())
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l].widen();
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a · x`.
fn axpy<T: Widen>(a: f32, x: &[T], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x.widen();
    }
}

#[cfg(glot_x86)]
mod x86 {
    use std::arch::x86_64::*;

    use super::Widen;
    use crate::engine::kernels::lanes::{exp, max8, sum8};

    /// A cache's rows as the AVX2 loops read them: values of f32 or f16,
    /// or Q8_0 blocks (`u8`).
    pub(super) trait Read: Sized {
        fn dot(a: &[f32], b: &[Self]) -> f32;
        fn axpy(a: f32, x: &[Self], y: &mut [f32]);
    }

    // Each is inlined into `head`, whose instruction sets its loops need.
    impl<T: Widen> Read for T {
        #[inline(always)]
        fn dot(a: &[f32], b: &[T]) -> f32 {
            // SAFETY: only `head` calls it, on a CPU with AVX2, FMA, F16C.
            unsafe { dot(a, b) }
        }
        #[inline(always)]
        fn axpy(a: f32, x: &[T], y: &mut [f32]) {
            // SAFETY: as above.
            unsafe { axpy(a, x, y) }
        }
    }

    impl Read for u8 {
        #[inline(always)]
        fn dot(a: &[f32], b: &[u8]) -> f32 {
            // SAFETY: as above.
            unsafe { crate::engine::kernels::kv_q8::x86::dot(a, b) }
        }
        #[inline(always)]
        fn axpy(a: f32, x: &[u8], y: &mut [f32]) {
            // SAFETY: as above.
            unsafe { crate::engine::kernels::kv_q8::x86::axpy(a, x, y) }
        }
    }

    /// [`super::Head::run`] with 256-bit fused multiply-adds, keys and
    /// values read as f32, widened from f16 by F16C, or from Q8_0 blocks.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn head<T: Read>(
        job: &super::Head<T>,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
    ) {
        job.run(scores, out, stats, T::dot, T::axpy, |job, s, st| {
            weigh(job, s, st)
        });
    }

    /// Widest head [`head512`] takes: 16 of its key or value rows, as f32,
    /// are 16 KiB on the stack.
    pub(super) const WIDE_D: usize = 256;

    /// [`super::Head::weigh`] eight scores at a time, the exponentials by
    /// [`exp`] rather than one library call each; positions a row does not
    /// see are given a weight of zero.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn weigh<T>(job: &super::Head<T>, scores: &mut [f32], stats: &mut [(f32, f32)]) {
        let (from, len) = (job.positions.start, job.positions.len());
        for (i, stat) in stats.iter_mut().enumerate().take(job.rows) {
            let seen = job.visible(i) - from;
            let (s, unseen) = scores[i * len..(i + 1) * len].split_at_mut(seen);
            unseen.fill(0.0);
            let (whole, tail) = s.split_at_mut(seen - seen % 8);
            // The tail, padded with scores that weigh nothing.
            let mut last = [f32::NEG_INFINITY; 8];
            last[..tail.len()].copy_from_slice(tail);
            // SAFETY: eight values at a time within `whole`, and `last`.
            unsafe {
                let mut top = _mm256_loadu_ps(last.as_ptr());
                for c in whole.chunks_exact(8) {
                    top = _mm256_max_ps(top, _mm256_loadu_ps(c.as_ptr()));
                }
                let max = max8(top);
                let mv = _mm256_set1_ps(max);
                let mut total = _mm256_setzero_ps();
                for c in whole.chunks_exact_mut(8) {
                    let w = exp(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
                    _mm256_storeu_ps(c.as_mut_ptr(), w);
                    total = _mm256_add_ps(total, w);
                }
                let w = exp(_mm256_sub_ps(_mm256_loadu_ps(last.as_ptr()), mv));
                _mm256_storeu_ps(last.as_mut_ptr(), w);
                tail.copy_from_slice(&last[..tail.len()]);
                let sum = sum8(total) + tail.iter().sum::<f32>();
                *stat = (max, sum);
            }
        }
    }

    /// [`super::Head::run`] in 512-bit vectors, for f32 or f16 caches whose
    /// heads are whole vectors of 16 values, at most [`WIDE_D`].
    ///
    /// In [`head`] each score was a dot product ending in a sum of its
    /// lanes, and each key was widened again for every query row. Here 16
    /// positions' keys are widened once into a block, each row's 16 dot
    /// products are summed lane-wise together (`sum16`: 45 shuffles and
    /// adds for 16 sums), and the weighted values gather in registers for up
    /// to eight rows at a time. Each score and output value depends only on
    /// its own row and the unit's positions, in a fixed order: rows beside
    /// other rows, or another call's rows, change no bit.
    ///
    /// # Safety
    /// The CPU has AVX-512 F besides AVX2, FMA and F16C; `q.d` is a
    /// multiple of 16 and at most [`WIDE_D`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn head512<T>(
        job: &super::Head<T>,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
    ) {
        let super::Head {
            q,
            k,
            v,
            h,
            rows,
            scale,
            ..
        } = *job;
        let (from, to, d) = (job.positions.start, job.positions.end, q.d);
        assert!(d.is_multiple_of(16) && d <= WIDE_D);
        let (len, vectors) = (to - from, d / 16);
        let mut block = [0f32; 16 * WIDE_D];
        let mut t0 = from;
        while t0 < to {
            let n = (to - t0).min(16);
            for t in 0..n {
                widen(k.row(h, t0 + t), &mut block[t * d..(t + 1) * d]);
            }
            for i in 0..rows {
                let qi = q.row(h, i);
                // SAFETY: `qi` and the block's rows hold `d` values, 16 per
                // vector; the store writes `n` lanes within row `i`'s
                // `len` scores.
                unsafe {
                    let mut acc = [_mm512_setzero_ps(); 16];
                    for c in 0..vectors {
                        let qv = _mm512_loadu_ps(qi.as_ptr().add(c * 16));
                        // Rows past `n` hold an earlier block's keys, or
                        // zeros: their sums are not stored.
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let kv = _mm512_loadu_ps(block.as_ptr().add(t * d + c * 16));
                            *acc = _mm512_fmadd_ps(qv, kv, *acc);
                        }
                    }
                    let s = _mm512_mul_ps(sum16(&acc), _mm512_set1_ps(scale));
                    let at = scores.as_mut_ptr().add(i * len + t0 - from);
                    _mm512_mask_storeu_ps(at, ((1u32 << n) - 1) as u16, s);
                }
            }
            t0 += n;
        }
        weigh(job, scores, stats);
        let mut t0 = from;
        while t0 < to {
            let n = (to - t0).min(16);
            for t in 0..n {
                widen(v.row(h, t0 + t), &mut block[t * d..(t + 1) * d]);
            }
            let mut first = 0;
            while first < rows {
                let group = (rows - first).min(8);
                let weights = &scores[first * len + t0 - from..];
                let o = &mut out[first * d..];
                // SAFETY: rows `first..first + group` of `out` and of the
                // scores exist; the block holds `n` rows of `d` values.
                unsafe {
                    match group {
                        8 => weigh_values::<8>(weights, len, &block, n, d, o),
                        7 => weigh_values::<7>(weights, len, &block, n, d, o),
                        6 => weigh_values::<6>(weights, len, &block, n, d, o),
                        5 => weigh_values::<5>(weights, len, &block, n, d, o),
                        4 => weigh_values::<4>(weights, len, &block, n, d, o),
                        3 => weigh_values::<3>(weights, len, &block, n, d, o),
                        2 => weigh_values::<2>(weights, len, &block, n, d, o),
                        _ => weigh_values::<1>(weights, len, &block, n, d, o),
                    }
                }
                first += group;
            }
            t0 += n;
        }
    }

    /// `out` row `r` (`d` values apart) += Σ over the block's `n` positions
    /// `t` of weight `weights[r · len + t]` × value row `t`, one vector of
    /// 16 values of the `R` rows at a time, in the positions' order.
    ///
    /// # Safety
    /// `weights` has `R` rows `len` apart of at least `n` values, `out` `R`
    /// rows of `d`, `block` `n` rows of `d`; the CPU has AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn weigh_values<const R: usize>(
        weights: &[f32],
        len: usize,
        block: &[f32],
        n: usize,
        d: usize,
        out: &mut [f32],
    ) {
        assert!(weights.len() >= (R - 1) * len + n && out.len() >= R * d);
        assert!(block.len() >= n * d);
        // SAFETY: within the lengths just checked.
        unsafe {
            for c in (0..d).step_by(16) {
                let mut acc = [_mm512_setzero_ps(); R];
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_loadu_ps(out.as_ptr().add(r * d + c));
                }
                for t in 0..n {
                    let value = _mm512_loadu_ps(block.as_ptr().add(t * d + c));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let w = _mm512_set1_ps(*weights.get_unchecked(r * len + t));
                        *acc = _mm512_fmadd_ps(w, value, *acc);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(out.as_mut_ptr().add(r * d + c), *acc);
                }
            }
        }
    }

    /// The sums of each of 16 vectors' lanes: lane `t` of the result is the
    /// sum of `acc[t]`'s, by a tree of lane-wise adds of shuffled halves.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) fn sum16(acc: &[__m512; 16]) -> __m512 {
        // Within each 128-bit lane: pairs of vectors, then pairs of pairs,
        // leave lane `l` of vector `m` holding vectors `4m..4m + 4`'s sums
        // of their lane `l`.
        let pairs: [__m512; 8] = std::array::from_fn(|k| {
            let (a, b) = (acc[2 * k], acc[2 * k + 1]);
            _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
        });
        let quads: [__m512; 4] = std::array::from_fn(|m| {
            let (x, y) = (
                _mm512_castps_pd(pairs[2 * m]),
                _mm512_castps_pd(pairs[2 * m + 1]),
            );
            _mm512_add_ps(
                _mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)),
            )
        });
        // Across the 128-bit lanes: even lanes of two vectors beside their
        // odd lanes, added, twice.
        let across = |x: __m512, y: __m512| {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
            )
        };
        let halves = [across(quads[0], quads[1]), across(quads[2], quads[3])];
        across(halves[0], halves[1])
    }

    /// Row `row` of a cache as f32 values in `out`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn widen<T>(row: &[T], out: &mut [f32]) {
        assert!(row.len() == out.len() && out.len().is_multiple_of(16));
        // SAFETY: 16 values at a time within both; `T` is f32 or f16 (its
        // size tells which, at compile time).
        unsafe {
            for i in (0..out.len()).step_by(16) {
                let v = match std::mem::size_of::<T>() {
                    2 => _mm512_cvtph_ps(_mm256_loadu_si256(row.as_ptr().add(i) as *const __m256i)),
                    _ => _mm512_loadu_ps(row.as_ptr().add(i) as *const f32),
                };
                _mm512_storeu_ps(out.as_mut_ptr().add(i), v);
            }
        }
    }

    /// Eight values from `p` as f32: loaded, or widened from f16.
    ///
    /// # Safety
    /// Eight values of `T` are readable at `p`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8<T>(p: *const T) -> __m256 {
        // SAFETY: as the caller promises; `T` is f32 or f16 (its size
        // tells which, at compile time).
        unsafe {
            match std::mem::size_of::<T>() {
                2 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                _ => _mm256_loadu_ps(p as *const f32),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot<T: Widen>(a: &[f32], b: &[T]) -> f32 {
        let n = a.len().min(b.len());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: every load reads 8 values below `n`.
        unsafe {
            while i + 16 <= n {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    load8(b.as_ptr().add(i)),
                    s0,
                );
                s1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    load8(b.as_ptr().add(i + 8)),
                    s1,
                );
                i += 16;
            }
            if i + 8 <= n {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    load8(b.as_ptr().add(i)),
                    s0,
                );
                i += 8;
            }
        }
        sum8(_mm256_add_ps(s0, s1))
            + a[i..n]
                .iter()
                .zip(&b[i..n])
                .map(|(x, y)| x * y.widen())
                .sum::<f32>()
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy<T: Widen>(a: f32, x: &[T], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        // SAFETY: every load and store touches 8 values below `n`.
        unsafe {
            while i + 8 <= n {
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(
                    p,
                    _mm256_fmadd_ps(av, load8(x.as_ptr().add(i)), _mm256_loadu_ps(p)),
                );
                i += 8;
            }
        }
        for (y, x) in y[i..n].iter_mut().zip(&x[i..n]) {
            *y += a * x.widen();
        }
    }
}

#[cfg(glot_neon)]
mod neon {
    use std::arch::aarch64::*;

    use super::Widen;
    use crate::engine::kernels::neon::f16x4;

    /// [`super::Head::run`] with NEON's 128-bit fused multiply-adds, keys
    /// and values read as f32 or widened from f16 (`fcvtl`), as
    /// [`super::x86::head`] does with 256-bit ones.
    pub(super) fn head<T: Widen>(
        job: &super::Head<T>,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
    ) {
        job.run(scores, out, stats, dot, axpy, super::Head::weigh);
    }

    /// Four values from `p` as f32: loaded, or widened from f16.
    ///
    /// # Safety
    /// Four values of `T` are readable at `p`.
    #[inline(always)]
    unsafe fn load4<T>(p: *const T) -> float32x4_t {
        // SAFETY: as the caller promises; `T` is f32 or f16 (its size
        // tells which, at compile time).
        unsafe {
            match std::mem::size_of::<T>() {
                2 => f16x4(p as *const u8),
                _ => vld1q_f32(p as *const f32),
            }
        }
    }

    #[inline(always)]
    fn dot<T: Widen>(a: &[f32], b: &[T]) -> f32 {
        let n = a.len().min(b.len());
        let mut i = 0;
        // SAFETY: every load reads 4 values below `n`.
        let s = unsafe {
            let (mut s0, mut s1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            while i + 8 <= n {
                s0 = vfmaq_f32(s0, vld1q_f32(a.as_ptr().add(i)), load4(b.as_ptr().add(i)));
                s1 = vfmaq_f32(
                    s1,
                    vld1q_f32(a.as_ptr().add(i + 4)),
                    load4(b.as_ptr().add(i + 4)),
                );
                i += 8;
            }
            if i + 4 <= n {
                s0 = vfmaq_f32(s0, vld1q_f32(a.as_ptr().add(i)), load4(b.as_ptr().add(i)));
                i += 4;
            }
            vaddvq_f32(vaddq_f32(s0, s1))
        };
        s + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y.widen())
            .sum::<f32>()
    }

    #[inline(always)]
    fn axpy<T: Widen>(a: f32, x: &[T], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let mut i = 0;
        // SAFETY: every load and store touches 4 values below `n`.
        unsafe {
            while i + 4 <= n {
                let p = y.as_mut_ptr().add(i);
                vst1q_f32(p, vfmaq_n_f32(vld1q_f32(p), load4(x.as_ptr().add(i)), a));
                i += 4;
            }
        }
        for (y, x) in y[i..n].iter_mut().zip(&x[i..n]) {
            *y += a * x.widen();
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

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn equals_the_general_computation_over_a_strided_cache() {
        for (kv, rep, seq, total, d) in [
            (2, 2, 1, 37, 16),
            (3, 1, 1, 1, 8),
            (2, 4, 3, 20, 12),
            (3, 3, 1, 300, 64),
            (2, 4, 3, 70, 32),
            // A prompt's positions: more rows than the decode kernel
            // takes, from the first position or after a cached prefix,
            // with heads of one to three vectors' tiles.
            (2, 3, 40, 100, 64),
            (1, 2, 37, 37, 32),
            (2, 1, 20, 300, 128),
            (3, 2, 17, 50, 8),
            // Several blocks of a prompt's positions, the last one short.
            (2, 2, 150, 170, 64),
            (1, 3, 70, 70, 16),
            (2, 1, 130, 130, 8),
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
            // A cache kept in f16 gives the product of its rounded values.
            let half = |t: &Tensor| t.to_dtype(DType::F16).unwrap();
            let (kh, vh) = (half(&k), half(&v));
            let widen = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            let want_half = reference(&q, &widen(&kh), &widen(&vh), seq, scale);
            let want = reference(&q, &k, &v, seq, scale);
            // The kernel's result, or its refusal where it has no vector
            // loops for a prompt's rows (aarch64, the portable build): the
            // decoder then takes the general computation.
            let check = |k: &Tensor, v: &Tensor, want: &Tensor, what: &str, parts| match attend_in(
                &q,
                k,
                v,
                seq,
                scale as f32,
                parts,
            )
            .unwrap()
            {
                Some(got) => {
                    let diff = max_diff(&got, want);
                    assert!(
                        diff < 1e-5,
                        "{what} kv {kv} rep {rep} seq {seq} {parts:?}: {diff}"
                    );
                }
                None => assert!(
                    rep * seq > MAX_ROWS && !cfg!(glot_x86),
                    "{what} kv {kv} rep {rep} seq {seq}: declined"
                ),
            };
            // Each head's positions whole, or cut in parts whose softmaxes
            // are merged (a part may hold no position a row sees).
            for parts in [None, Some(1), Some(2), Some(3), Some(7)] {
                check(&kh, &vh, &want_half, "f16", parts);
                check(&k, &v, &want, "f32", parts);
            }
            // A Q8_0 cache gives the product of its widened values.
            if !d.is_multiple_of(32) {
                continue;
            }
            use crate::engine::kernels::kv_q8;
            let q8 = |seed| {
                kv_q8::quantize(&random((1, kv, total + 5, d), seed))
                    .unwrap()
                    .narrow(2, 0, total)
                    .unwrap()
            };
            let (kq, vq) = (q8(2), q8(3));
            let widened = |t: &Tensor| kv_q8::dequantize(t).unwrap();
            let want_q8 = reference(&q, &widened(&kq), &widened(&vq), seq, scale);
            for parts in [None, Some(2), Some(3)] {
                check(&kq, &vq, &want_q8, "q8_0", parts);
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
        // Many rows of a width not a whole number of vectors.
        let q = random((1, 2, MAX_ROWS + 2, 12), 1);
        let k = random((1, 2, 40, 12), 2);
        assert!(attend(&q, &k, &k, 2, 1.0).unwrap().is_none());
        let k = random((1, 2, 40, 8), 2);
        let q = random((1, 2, 2, 8), 1).to_dtype(DType::F16).unwrap();
        let k = k.to_dtype(DType::F16).unwrap();
        assert!(attend(&q, &k, &k, 1, 1.0).unwrap().is_none());
        // Keys and values kept alike.
        let q = random((1, 2, 2, 8), 1);
        let v = k.to_dtype(DType::F32).unwrap();
        assert!(attend(&q, &k, &v, 1, 1.0).unwrap().is_none());
    }

    #[cfg(glot_x86)]
    #[test]
    fn sum16_gives_each_lane_the_sum_of_its_vector() {
        use std::arch::x86_64::*;
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let values: Vec<[f32; 16]> = (0..16)
            .map(|t| std::array::from_fn(|l| (t * 100 + l) as f32))
            .collect();
        // SAFETY: the CPU has AVX-512 F.
        let got: [f32; 16] = unsafe {
            let acc: [__m512; 16] = std::array::from_fn(|t| _mm512_loadu_ps(values[t].as_ptr()));
            std::mem::transmute(super::x86::sum16(&acc))
        };
        let want: Vec<f32> = values.iter().map(|v| v.iter().sum()).collect();
        assert_eq!(got.to_vec(), want);
    }
}

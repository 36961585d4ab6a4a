//! Work split between candle's thread pool: each worker writes its own
//! share of one output, so no result is copied or locked.

use super::panels::LANES;

/// Activation rows whose quantized values stay in the cache while a
/// thread's panels pass over them.
const ROW_BLOCK: usize = 64;

/// `len` elements from element `start` of the vector at address `base`:
/// one worker's share of an output that all the workers write.
///
/// # Safety
/// The range lies in the vector, the vector outlives the slice, and no one
/// else touches the range while the slice lives.
pub(super) unsafe fn share<'a, T>(base: usize, start: usize, len: usize) -> &'a mut [T] {
    unsafe { std::slice::from_raw_parts_mut((base as *mut T).add(start), len) }
}

/// `parts × len` values, part `i` written by `fill(i, part)`, the parts
/// split between the threads.
pub(super) fn filled<T: Copy + Default + Send>(
    parts: usize,
    len: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut data = vec![T::default(); parts * len];
    huge_pages(&mut data);
    if parts == 1 {
        fill(0, &mut data);
        return data;
    }
    let base = data.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(parts, |range| {
        for i in range {
            // SAFETY: each part is one worker's alone, inside `data`, which
            // outlives the pool call.
            fill(i, unsafe { share(base, i * len, len) });
        }
    });
    data
}

/// Asks for `data`'s pages to be 2 MiB ones where the kernel offers them
/// (transparent huge pages in `madvise` mode): a fresh matrix of a large
/// model is otherwise faulted in, zeroed and charged 4 KiB at a time, which
/// took half of a warm load's time.
fn huge_pages<T>(data: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        let bytes = std::mem::size_of_val(data);
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if bytes < 4 << 20 || page <= 0 {
            return;
        }
        let page = page as usize;
        let start = (data.as_mut_ptr() as usize).next_multiple_of(page);
        let end = (data.as_mut_ptr() as usize + bytes) / page * page;
        // SAFETY: the range lies inside `data`'s allocation, and the advice
        // changes only how its pages are backed, not what they hold.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}

/// Calls `job(matrix, panel, rows)` for every panel of matrices that have
/// `panels[matrix]` panels, against every row of `0..m`: the panels of all
/// the matrices are one range split between the threads, and a block of
/// rows stays in the cache while a worker's panels pass over it.
pub(super) fn for_panels(
    panels: &[usize],
    m: usize,
    job: impl Fn(usize, usize, std::ops::Range<usize>) + Sync,
) {
    let starts: Vec<usize> = panels
        .iter()
        .scan(0, |acc, &p| {
            let s = *acc;
            *acc += p;
            Some(s)
        })
        .collect();
    let total = panels.iter().sum();
    candle_core::utils::barrier_pool().execute_chunked(total, |range| {
        for r0 in (0..m).step_by(ROW_BLOCK) {
            let rows = r0..m.min(r0 + ROW_BLOCK);
            for i in range.clone() {
                let at = starts.partition_point(|&s| s <= i) - 1;
                job(at, i - starts[at], rows.clone());
            }
        }
    });
}

/// Writes a panel's 16 results for row `r` (fewer in a last panel that
/// passes `n`) into the `rows × n` output at address `dst`.
fn put_row(dst: usize, n: usize, panel: usize, r: usize, v: &[f32; LANES]) {
    let col = panel * LANES;
    // SAFETY: callers give each (row, panel) of an output to one job, which
    // writes it once, and the output outlives the pool call.
    unsafe {
        let at = (dst as *mut f32).add(r * n + col);
        std::ptr::copy_nonoverlapping(v.as_ptr(), at, LANES.min(n - col));
    }
}

/// One panel against `rows`: tiles of `R` rows from `r` (`tile(r)`), then
/// the rows left one at a time (`one(r)`), each row's results written into
/// the output `at` = (address, width, panel) with [`put_row`]. Every kernel
/// family decodes a panel once per tile this way.
pub(super) fn tile_rows<const R: usize>(
    rows: std::ops::Range<usize>,
    (dst, n, panel): (usize, usize, usize),
    tile: impl Fn(usize) -> [[f32; LANES]; R],
    one: impl Fn(usize) -> [f32; LANES],
) {
    let mut r = rows.start;
    while r + R <= rows.end {
        for (i, v) in tile(r).iter().enumerate() {
            put_row(dst, n, panel, r + i, v);
        }
        r += R;
    }
    for r in r..rows.end {
        put_row(dst, n, panel, r, &one(r));
    }
}

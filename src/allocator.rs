//! [`OffPageStart`], the binary's global allocator: another allocator with its large blocks moved
//! 64 bytes off the start of a page. Owns that one adjustment; which allocator sits beneath it,
//! and why, is `main.rs`'s choice.
//!
//! Why: mimalloc hands out blocks of 32 KiB and more at page (often 512 KiB) boundaries, and
//! hyper's read buffer for an upstream response is such a block. The response body is then sent
//! on to the browser straight out of that buffer. On AMD EPYC the kernel's copy out of a
//! page-start buffer just filled by `recv` (`_copy_from_iter` under `writev`) took 25.8 % of the
//! proxy's samples on the 100 KB script, against 4–6 % for a proxy whose buffer sat elsewhere; a C
//! reproduction (recv 100 KiB over loopback into `base + off`, writev it on) took 105–118 µs an
//! exchange at `off` 0 or 8 and 78–86 µs at 16, 64, 208 or 2048. With the blocks moved, 10.3 % and
//! +6–15 % requests/s at one connection (see README, "What limits it"). The same reason makes
//! jemalloc place large blocks at a random cache-line offset inside their first page.
//!
//! This is the crate's only `unsafe`: [`GlobalAlloc`] is an unsafe trait. Each block keeps the
//! layout it was asked for, so the shift is found again from the layout alone (no header to read),
//! and a moved block's pointer is always the inner allocator's pointer plus [`SHIFT`].
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};

/// How far a large block moves: one cache line, so SIMD-friendly alignment is kept.
pub const SHIFT: usize = 64;

/// From this size up a block is moved. Hyper's read buffer starts at 8 KiB and grows (16, 32, 64,
/// 128 KiB…) while responses fill it; at 32 KiB and more it holds bodies worth the 64 bytes.
pub const LARGE: usize = 32 * 1024;

/// `A` with blocks of [`LARGE`] bytes and more (alignment up to [`SHIFT`]) handed out at
/// `A`'s pointer + [`SHIFT`].
pub struct OffPageStart<A>(pub A);

/// The layout `A` is asked for in place of `layout`, or `None` when the block is not moved.
fn moved(layout: Layout) -> Option<Layout> {
    if layout.size() < LARGE || layout.align() > SHIFT {
        return None;
    }
    // An alignment up to SHIFT divides SHIFT, so `A`'s pointer + SHIFT keeps it.
    Layout::from_size_align(layout.size().checked_add(SHIFT)?, layout.align()).ok()
}

// SAFETY: every pointer handed out lies SHIFT bytes inside a block of `A` that is SHIFT bytes
// larger than asked, so it is valid for `layout.size()` bytes, and aligned (SHIFT is a multiple
// of the alignment). Whether a block was moved depends on its layout alone, which the caller
// must pass back unchanged, so `dealloc` and `realloc` recover `A`'s pointer and layout exactly.
unsafe impl<A: GlobalAlloc> GlobalAlloc for OffPageStart<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match moved(layout) {
            // SAFETY: `inner` has a non-zero size; a non-null block is SHIFT bytes larger.
            Some(inner) => unsafe { shift(self.0.alloc(inner)) },
            // SAFETY: the caller's contract, passed on.
            None => unsafe { self.0.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match moved(layout) {
            // SAFETY: as in `alloc`.
            Some(inner) => unsafe { shift(self.0.alloc_zeroed(inner)) },
            // SAFETY: the caller's contract, passed on.
            None => unsafe { self.0.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match moved(layout) {
            // SAFETY: `ptr` came from `alloc` with this layout, so it is `A`'s pointer + SHIFT
            // and `inner` is the layout `A` gave it with.
            Some(inner) => unsafe { self.0.dealloc(ptr.sub(SHIFT), inner) },
            // SAFETY: the caller's contract, passed on.
            None => unsafe { self.0.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(wanted) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (moved(layout), moved(wanted)) {
            // Moved before and after: `A` grows its own block, whose bytes (shift included)
            // it copies if it has to move it, so the data stays SHIFT bytes in.
            (Some(inner), Some(inner_wanted)) => unsafe {
                // SAFETY: `ptr - SHIFT` and `inner` are what `A` handed out; the new size is
                // non-zero and checked against overflow by `moved`.
                shift(self.0.realloc(ptr.sub(SHIFT), inner, inner_wanted.size()))
            },
            // SAFETY: neither is moved: the caller's contract, passed on.
            (None, None) => unsafe { self.0.realloc(ptr, layout, new_size) },
            // Crossing LARGE: a fresh block, the bytes copied, the old block freed.
            _ => unsafe {
                // SAFETY: `wanted` is a valid non-zero layout (the caller's `new_size` is
                // non-zero); both blocks are valid for the smaller size and do not overlap.
                let fresh = self.alloc(wanted);
                if !fresh.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                fresh
            },
        }
    }
}

/// `A`'s block moved SHIFT bytes in; null (out of memory) stays null.
///
/// # Safety
/// `block` is null or valid for more than SHIFT bytes.
unsafe fn shift(block: *mut u8) -> *mut u8 {
    if block.is_null() {
        block
    } else {
        // SAFETY: the block is larger than SHIFT (the caller's promise).
        unsafe { block.add(SHIFT) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    const SIZES: [usize; 6] = [1, 4096, LARGE - 1, LARGE, 128 * 1024, 1 << 20];
    const ALIGNS: [usize; 4] = [1, 16, 64, 4096];

    /// Counts `A`'s live blocks, so a block freed with the wrong pointer or layout, or not at all,
    /// shows (the system allocator would crash or leak silently).
    struct Counted {
        live: std::sync::Mutex<Vec<(usize, Layout)>>,
        /// Out of memory: every allocation fails.
        full: std::sync::atomic::AtomicBool,
    }

    unsafe impl GlobalAlloc for Counted {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if self.full.load(std::sync::atomic::Ordering::Relaxed) {
                return std::ptr::null_mut();
            }
            let ptr = unsafe { System.alloc(layout) };
            self.live.lock().unwrap().push((ptr as usize, layout));
            ptr
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let mut live = self.live.lock().unwrap();
            let at = live
                .iter()
                .position(|&(p, l)| p == ptr as usize && l == layout);
            assert!(
                at.is_some(),
                "freed {ptr:?} with {layout:?}, not as handed out"
            );
            live.retain(|&(p, _)| p != ptr as usize);
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn counted() -> OffPageStart<Counted> {
        OffPageStart(Counted {
            live: std::sync::Mutex::new(Vec::new()),
            full: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn live(alloc: &OffPageStart<Counted>) -> Vec<(usize, Layout)> {
        alloc.0.live.lock().unwrap().clone()
    }

    #[test]
    fn large_blocks_sit_shift_bytes_into_the_inner_block_and_keep_their_alignment() {
        let alloc = counted();
        for size in SIZES {
            for align in ALIGNS {
                let layout = Layout::from_size_align(size, align).unwrap();
                let ptr = unsafe { alloc.alloc(layout) };
                assert!(!ptr.is_null());
                assert_eq!(ptr as usize % align, 0, "{layout:?}");
                let (inner, inner_layout) = live(&alloc)[0];
                let is_moved = size >= LARGE && align <= SHIFT;
                assert_eq!(
                    ptr as usize - inner,
                    if is_moved { SHIFT } else { 0 },
                    "{layout:?}"
                );
                assert_eq!(inner_layout.size(), size + if is_moved { SHIFT } else { 0 });
                // The whole block is usable: write its first and last byte.
                unsafe {
                    ptr.write(1);
                    ptr.add(size - 1).write(2);
                    alloc.dealloc(ptr, layout);
                }
                assert!(live(&alloc).is_empty(), "{layout:?} not freed");
            }
        }
    }

    #[test]
    fn zeroed_large_blocks_are_zero_to_their_end() {
        let alloc = counted();
        let layout = Layout::from_size_align(LARGE + 100, 8).unwrap();
        unsafe {
            let ptr = alloc.alloc_zeroed(layout);
            assert!(
                std::slice::from_raw_parts(ptr, layout.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            alloc.dealloc(ptr, layout);
        }
        assert!(live(&alloc).is_empty());
    }

    #[test]
    fn realloc_keeps_the_bytes_across_every_size_and_frees_what_it_leaves() {
        let alloc = counted();
        for from in SIZES {
            for to in SIZES {
                for align in [8, 64, 4096] {
                    let layout = Layout::from_size_align(from, align).unwrap();
                    unsafe {
                        let ptr = alloc.alloc(layout);
                        for i in 0..from {
                            ptr.add(i).write(i as u8 ^ 0x5a);
                        }
                        let grown = alloc.realloc(ptr, layout, to);
                        assert!(!grown.is_null());
                        assert_eq!(grown as usize % align, 0);
                        for i in 0..from.min(to) {
                            assert_eq!(grown.add(i).read(), i as u8 ^ 0x5a, "{from} → {to}, {i}");
                        }
                        let after = Layout::from_size_align(to, align).unwrap();
                        let (inner, _) = live(&alloc)[0];
                        let is_moved = to >= LARGE && align <= SHIFT;
                        assert_eq!(grown as usize - inner, if is_moved { SHIFT } else { 0 });
                        alloc.dealloc(grown, after);
                    }
                    assert!(live(&alloc).is_empty(), "{from} → {to} at {align} leaked");
                }
            }
        }
    }

    /// Out of memory, every path returns null and a block that was to grow stays as it was.
    #[test]
    fn out_of_memory_is_null_and_leaves_the_old_block_whole() {
        let alloc = counted();
        for (from, to) in [(LARGE, 2 * LARGE), (100, LARGE), (LARGE, 100), (100, 200)] {
            let layout = Layout::from_size_align(from, 8).unwrap();
            unsafe {
                let ptr = alloc.alloc(layout);
                ptr.write_bytes(0xa5, from);
                alloc
                    .0
                    .full
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                assert!(alloc.alloc(layout).is_null());
                assert!(alloc.alloc_zeroed(layout).is_null());
                assert!(alloc.realloc(ptr, layout, to).is_null(), "{from} → {to}");
                alloc
                    .0
                    .full
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                assert!(
                    std::slice::from_raw_parts(ptr, from)
                        .iter()
                        .all(|&b| b == 0xa5)
                );
                alloc.dealloc(ptr, layout);
            }
            assert!(live(&alloc).is_empty(), "{from} → {to} leaked");
        }
    }

    #[test]
    fn a_size_that_would_overflow_with_the_shift_is_not_moved() {
        let near_max = Layout::from_size_align(isize::MAX as usize - 8, 1).ok();
        assert_eq!(near_max.and_then(moved), None);
    }
}

//! A test-only global allocator whose blocks are not what the C runtime's
//! `malloc` hands out (cargo feature `foreign-allocator`; never in a
//! release). On Linux Rust's default allocator *is* glibc malloc, so a host
//! that wrongly calls `free()` on a string the library returned (a .NET
//! `string` return declaration, a C host's `free(s)`) goes unnoticed. This
//! allocator moves every block behind a header, so such a `free()` hits a
//! pointer glibc never handed out and aborts the process at once
//! (`free(): invalid pointer`), and it checks its own canaries on every
//! deallocation: a double free, a write past the end of a returned buffer or
//! before its start aborts with a message naming what happened.
//!
//! Layout of one block (`off` = max(align, 32)):
//!
//! ```text
//! base                      base+off-16        base+off (returned)       +size        +size+8
//! | padding ................| size | HEAD_MAGIC | user data .............| TAIL canary |
//! ```
//!
//! The word glibc would read as the chunk size (`p - 8`) is `HEAD_MAGIC`, an
//! impossible size, so glibc's own `free()` check refuses the pointer.
//!
//! Build: `CARGO_TARGET_DIR=target/foreign-alloc cargo build --release --lib
//! --features foreign-allocator`; the .NET and C suites then run against
//! `target/foreign-alloc/release/libmailoauth.so`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Read by glibc as the chunk size of a foreign-freed pointer: huge and
/// misaligned, so `free()` aborts ("invalid pointer" / "invalid size").
const HEAD_MAGIC: u64 = 0xF0E1_D2C3_B4A5_9687;
/// Written over `HEAD_MAGIC` when the block is released: a second release
/// of the same pointer is recognised.
const HEAD_FREED: u64 = 0x0BAD_F4EE_D0BA_DF4E;
/// After the user data (unaligned): catches a host writing past the end.
const TAIL_MAGIC: u64 = 0x7A11_C0DE_5AFE_7A11;
const HEADER: usize = 16;
const MIN_OFF: usize = 32;
const TAIL: usize = 8;

/// The offset allocator (see the module documentation).
pub struct ForeignAllocator;

fn outer(layout: Layout) -> Option<(Layout, usize)> {
    let off = layout.align().max(MIN_OFF);
    let size = layout.size().checked_add(off)?.checked_add(TAIL)?;
    Layout::from_size_align(size, off).ok().map(|l| (l, off))
}

fn die(what: &str) -> ! {
    use std::io::Write;
    // Stderr is unbuffered; writing byte slices does not allocate.
    let mut err = std::io::stderr();
    let _ = err.write_all(b"mailoauth foreign-allocator: ");
    let _ = err.write_all(what.as_bytes());
    let _ = err.write_all(b"\n");
    std::process::abort()
}

// SAFETY: every block handed out is `layout.size()` bytes at an address
// aligned to `layout.align()` (the offset is a multiple of the alignment),
// inside a System allocation of the outer layout, which `dealloc` rebuilds
// from the same `layout`.
unsafe impl GlobalAlloc for ForeignAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((outer_layout, off)) = outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: the outer layout has a non-zero size (off >= 32).
        let base = unsafe { System.alloc(outer_layout) };
        if base.is_null() {
            return base;
        }
        // SAFETY: base..base+off+size+TAIL is ours; off >= HEADER, so the
        // two header words lie inside the padding before the user data.
        unsafe {
            let user = base.add(off);
            (user.sub(HEADER) as *mut u64).write_unaligned(layout.size() as u64);
            (user.sub(8) as *mut u64).write_unaligned(HEAD_MAGIC);
            (user.add(layout.size()) as *mut u64).write_unaligned(TAIL_MAGIC);
            user
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some((outer_layout, off)) = outer(layout) else {
            die("dealloc with an impossible layout");
        };
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc's
        // contract), so the header and the tail canary are ours to read.
        unsafe {
            let head = (ptr.sub(8) as *const u64).read_unaligned();
            if head == HEAD_FREED {
                die("double free of a block");
            }
            if head != HEAD_MAGIC {
                die("block header overwritten (a write before the start, or a foreign pointer)");
            }
            let size = (ptr.sub(HEADER) as *const u64).read_unaligned();
            if size != layout.size() as u64 {
                die("block freed with another size than it was allocated with");
            }
            if (ptr.add(layout.size()) as *const u64).read_unaligned() != TAIL_MAGIC {
                die("tail canary overwritten (a write past the end of a block)");
            }
            (ptr.sub(8) as *mut u64).write_unaligned(HEAD_FREED);
            System.dealloc(ptr.sub(off), outer_layout);
        }
    }
}

#[global_allocator]
static GLOBAL: ForeignAllocator = ForeignAllocator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_offset_aligned_and_round_trip() {
        for align in [1usize, 2, 8, 16, 32, 64, 4096] {
            for size in [0usize, 1, 7, 31, 1000] {
                let layout = Layout::from_size_align(size.max(1), align).unwrap();
                // SAFETY: a non-zero layout; freed with the same layout.
                unsafe {
                    let p = ForeignAllocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alignment {align}");
                    assert_eq!((p.sub(8) as *const u64).read_unaligned(), HEAD_MAGIC);
                    std::ptr::write_bytes(p, 0xAB, layout.size());
                    ForeignAllocator.dealloc(p, layout);
                }
            }
        }
    }

    #[test]
    fn the_global_allocator_is_in_use() {
        let s = String::from("Grüße ✓");
        let p = s.as_ptr();
        // SAFETY: reading the header word before a live heap block.
        let head = unsafe { (p.sub(8) as *const u64).read_unaligned() };
        assert_eq!(head, HEAD_MAGIC);
    }
}

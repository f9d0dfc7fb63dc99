// memtest: fills all of the guest's RAM that it does not occupy with a pattern
// derived from `seed=N` (default 1) and each word's address, then verifies it.
//
// Tested: every mmap RAM (type 1) range below 4 GiB, minus the first page
// (0-0xFFF), minus the guest's own image (code, data, stack, the copied boot
// information: [image_start, image_end)), minus the legacy hole 0xA0000-0xFFFFF
// should the map claim it. The loader's Multiboot structures are overwritten:
// the runtime copied them first. RAM above 4 GiB is reported and skipped
// (paging is off). `mib=N` limits the test to the first N MiB of candidates.
//
// `passes=N` verifies N times (default 1), for a neighbour's stray writes that come later.
// Prints "memtest: checked <N> MiB (<bytes> bytes in <k> ranges) seed=<s>";
// exit 0 on success, 1 on the first mismatch (its address is printed), 2 if
// the loader gave no memory map.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "memtest";

namespace {

struct Range { u64 base, end; };   // [base, end)

Range ranges[160];
u32 range_count;

void add(u64 base, u64 end) {
    if (base >= end) return;
    if (range_count < sizeof ranges / sizeof ranges[0]) ranges[range_count++] = {base, end};
}

// Adds [base, end) minus `hole`.
void add_minus(u64 base, u64 end, Range hole, void (*next)(u64, u64)) {
    if (end <= hole.base || base >= hole.end) {
        next(base, end);
        return;
    }
    if (base < hole.base) next(base, hole.base);
    if (end > hole.end) next(hole.end, end);
}

Range g_image, g_legacy{0xA0000, 0x100000};

void add_minus_legacy(u64 b, u64 e) { add_minus(b, e, g_legacy, add); }
void add_minus_image(u64 b, u64 e) { add_minus(b, e, g_image, add_minus_legacy); }

inline u32 pattern(u32 seed, u32 addr) {
    u32 x = addr ^ (seed * 0x9E3779B9u);
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x ^ seed;
}

}  // namespace

u32 guest_main() {
    if (!boot.has_mmap || boot.mmap_count == 0) {
        printf("memtest: FAIL no memory map from the loader (flags=0x%x)\n", boot.flags);
        return 2;
    }
    u32 seed = u32(cmdline_u64("seed", 1));
    u64 limit = cmdline_u64("mib", ~0ull >> 20) << 20;
    g_image = {image_start(), image_end()};
    printf("memtest: image 0x%x-0x%x, seed=%u\n", image_start(), image_end() - 1, seed);

    u64 skipped_high = 0;
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type != 1 || r.length == 0) continue;
        u64 base = (r.base + 3) & ~3ull;
        u64 end = (r.base + r.length) & ~3ull;
        if (end > (1ull << 32)) {
            skipped_high += end - (base > (1ull << 32) ? base : (1ull << 32));
            end = 1ull << 32;
        }
        if (base < 0x1000) base = 0x1000;
        add_minus_image(base, end);
    }
    if (skipped_high) printf("memtest: skipping %llu MiB above 4 GiB (paging is off)\n", skipped_high >> 20);

    // Apply mib= to the candidates, in map order.
    u64 budget = limit;
    for (u32 i = 0; i < range_count; ++i) {
        u64 len = ranges[i].end - ranges[i].base;
        if (len > budget) ranges[i].end = ranges[i].base + budget, len = budget;
        budget -= len;
    }

    u64 total = 0;
    for (u32 i = 0; i < range_count; ++i) {
        if (ranges[i].end <= ranges[i].base) continue;
        printf("memtest: range 0x%08llx-0x%08llx\n", ranges[i].base, ranges[i].end - 1);
        total += ranges[i].end - ranges[i].base;
    }

    // Fill, then verify (the whole fill first: aliasing shows up as a mismatch).
    for (u32 i = 0; i < range_count; ++i) {
        for (u32 a = u32(ranges[i].base), end = u32(ranges[i].end - 4); ranges[i].end > ranges[i].base; a += 4) {
            *reinterpret_cast<volatile u32*>(a) = pattern(seed, a);
            if (a == end) break;
        }
    }
    printf("memtest: filled %llu MiB, verifying\n", total >> 20);
    // passes=N: verify N times (a neighbour guest keeps working meanwhile: what lands in this
    // RAM from outside shows up in a later pass).
    const u64 passes = cmdline_u64("passes", 1);
    for (u64 pass = 1; pass <= passes; ++pass) {
        for (u32 i = 0; i < range_count; ++i) {
            for (u32 a = u32(ranges[i].base), end = u32(ranges[i].end - 4); ranges[i].end > ranges[i].base; a += 4) {
                u32 got = *reinterpret_cast<volatile u32*>(a);
                u32 want = pattern(seed, a);
                if (got != want) {
                    printf("memtest: FAIL mismatch at 0x%08x: expected 0x%08x got 0x%08x (pass %llu)\n", a, want, got,
                           pass);
                    // What else changed around it: the extent of a foreign write says who made it.
                    u32 from = a > 64 ? a - 64 : a, n = 0;
                    for (u32 b = from & ~3u; b < a + 256 && n < 24; b += 4) {
                        if (b < ranges[i].base || b + 4 > ranges[i].end) continue;
                        u32 v = *reinterpret_cast<volatile u32*>(b);
                        if (v != pattern(seed, b)) printf("memtest:   0x%08x: 0x%08x\n", b, v), n++;
                    }
                    return 1;
                }
                if (a == end) break;
            }
        }
        if (passes > 1) printf("memtest: pass %llu of %llu ok\n", pass, passes);
    }
    printf("memtest: checked %llu MiB (%llu bytes in %u ranges) seed=%u\n", total >> 20, total, range_count, seed);
    return 0;
}

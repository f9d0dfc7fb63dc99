// canary: the victim's side of the DMA attack test (issue 13). It fills a region of its
// own RAM with a position-dependent pattern, then checks the whole region again and again:
// a DMA from another guest's device that reached this guest's memory shows up as a changed
// word, with its address.
//
// cmdline (numbers decimal or 0x hex, K/M/G suffixes):
//   canary_at=A     start of the region (default 16M; 2 MiB-aligned, as the attacker's targets)
//   canary_size=N   its size (default 2M; a multiple of 4 KiB)
//   rounds=R        checks after arming (default 20)
//   interval_ms=N   time between checks (default 500; TSC, lib/tsc.hpp)
//   seed=N          mixed into the pattern (default 1), so two canaries differ
//   poke=R          self-test: before round R's check the guest changes one word itself
//                   (the middle of the region), which that round must report
// The region must lie in a RAM range of the Multiboot map and not overlap the guest's image.
//
// Output:
//   canary: armed at 0x... size 0x...
//   canary: intact round R                           (R = 1..rounds)
//   canary: PASS
// or, at the first round that finds a change (every changed word is counted, the first 8
// printed):
//   canary: CORRUPTED at 0x... (was 0x... expected 0x...)
//   canary: FAIL round R: N words changed in 0x...-0x...
// Exit: 0 pass, 1 corrupted, 2 bad region (alignment, not RAM, overlaps the image), 3 no TSC rate.
#include "lib/guest.hpp"
#include "lib/tsc.hpp"

extern "C" const char guest_name[] = "canary";

namespace {

// A hash of the word's address and the seed (murmur3's finaliser): no two nearby words
// alike, no constant an unrelated write could happen to match.
u32 pattern(u32 addr, u32 seed)
{
    u32 x = addr ^ seed * 0x9e3779b9u;
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x;
}

bool in_ram(u64 base, u64 len)
{
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type == 1 && base >= r.base && base + len <= r.base + r.length) return true;
    }
    return false;
}

}  // namespace

u32 guest_main()
{
    const u64 at = cmdline_u64("canary_at", 16ull << 20);
    const u64 size = cmdline_u64("canary_size", 2ull << 20);
    const u32 rounds = u32(cmdline_u64("rounds", 20));
    const u32 interval_ms = u32(cmdline_u64("interval_ms", 500));
    const u32 seed = u32(cmdline_u64("seed", 1));
    const u32 poke = u32(cmdline_u64("poke", 0));
    if (at % (2ull << 20) || !size || size % 4096 || at + size > (1ull << 32)) {
        printf("canary: FAIL bad region 0x%llx size 0x%llx (2 MiB-aligned start, 4 KiB multiple, below 4 GiB)\n",
               at, size);
        return 2;
    }
    if (!boot.has_mmap || !in_ram(at, size)) {
        printf("canary: FAIL region 0x%llx-0x%llx is not RAM in the memory map\n", at, at + size - 1);
        return 2;
    }
    if (at < image_end() && image_start() < at + size) {
        printf("canary: FAIL region 0x%llx-0x%llx overlaps the guest's image 0x%x-0x%x\n", at, at + size - 1,
               image_start(), image_end() - 1);
        return 2;
    }
    const char* src = "";
    const u64 khz = tsc_khz(&src);
    if (!khz) {
        printf("canary: FAIL no TSC rate (cpuid 0x40000010, 0x15 or the PIT)\n");
        return 3;
    }

    const u32 base = u32(at), words = u32(size / 4);
    volatile u32* const p = reinterpret_cast<volatile u32*>(base);
    for (u32 i = 0; i < words; ++i) p[i] = pattern(base + 4 * i, seed);
    printf("canary: armed at 0x%x size 0x%x (tsc %llu kHz from %s, every %u ms, %u rounds)\n", base, u32(size), khz,
           src, interval_ms, rounds);

    for (u32 round = 1; round <= rounds; ++round) {
        Deadline next(khz, interval_ms);
        while (!next.passed()) asm volatile("pause");
        if (round == poke) {
            const u32 i = u32(size / 8);
            printf("canary: poke: changing the word at 0x%x\n", base + 4 * i);
            p[i] = p[i] ^ 0x00010000u;
        }
        u32 changed = 0;
        u32 first = 0, last = 0;
        for (u32 i = 0; i < words; ++i) {
            const u32 want = pattern(base + 4 * i, seed);
            const u32 got = p[i];
            if (got == want) continue;
            if (changed < 8) printf("canary: CORRUPTED at 0x%x (was 0x%08x expected 0x%08x)\n", base + 4 * i, got, want);
            if (!changed) first = base + 4 * i;
            last = base + 4 * i;
            ++changed;
        }
        if (changed) {
            printf("canary: FAIL round %u: %u words changed in 0x%x-0x%x\n", round, changed, first, last + 3);
            return 1;
        }
        printf("canary: intact round %u\n", round);
    }
    printf("canary: PASS\n");
    return 0;
}

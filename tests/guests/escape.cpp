// escape: touches guest-physical memory outside its RAM. Under Keel it must be
// stopped at the first access ("keel: guest escape stopped: ... <address>");
// it never exits normally.
//
//   addr=0xN     the address (default: the first address at or above 1 MiB
//                that no mmap RAM range covers, i.e. just above the top of RAM)
//   op=read      read a dword only
//   op=write     write a dword only
//   op=both      read, then write (the default)
//   pc           expect a PC's answer instead of being stopped (Keel's default,
//                on_bad_access = "pc"): the read returns all ones, the write is
//                dropped (a second read still returns all ones); exit 0 if so
//
// It prints "escape: reading 0x<addr>" / "escape: writing 0x<addr>" before each
// access. If an access completes it prints "escape: FAIL: read outside RAM
// returned 0x<v>" or "escape: FAIL: write outside RAM completed" (and goes on to
// the write, for op=both), then exits with 0xbad; it exits with 0xbae if
// the address is not outside RAM per the mmap or not reachable (>= 4 GiB).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "escape";

namespace {

bool is_ram(u64 a) {
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type == 1 && a >= r.base && a - r.base < r.length) return true;
    }
    return false;
}

// The lowest address >= 1 MiB no RAM range covers (ranges may be adjacent).
u64 top_of_ram() {
    u64 a = 0x100000;
    for (bool moved = true; moved;) {
        moved = false;
        for (u32 i = 0; i < boot.mmap_count; ++i) {
            const MemRegion& r = boot.mmap[i];
            if (r.type == 1 && a >= r.base && a - r.base < r.length) {
                a = r.base + r.length;
                moved = true;
            }
        }
    }
    return a;
}

}  // namespace

u32 guest_main() {
    u64 addr = cmdline_u64("addr", top_of_ram());
    const char* op = "both";
    const char* v;
    usize len;
    bool do_read = true, do_write = true;
    if (cmdline_value("op", &v, &len)) {
        if (len == 4 && memcmp(v, "read", 4) == 0) do_write = false, op = "read";
        else if (len == 5 && memcmp(v, "write", 5) == 0) do_read = false, op = "write";
    }
    printf("escape: target 0x%llx op=%s\n", addr, op);
    if (addr > 0xFFFFFFFCull) {
        printf("escape: FAIL target 0x%llx is not reachable with paging off\n", addr);
        return 0xbae;
    }
    if (is_ram(addr)) {
        printf("escape: FAIL target 0x%llx is RAM per the mmap\n", addr);
        return 0xbae;
    }
    volatile u32* p = reinterpret_cast<volatile u32*>(u32(addr));
    if (cmdline_flag("pc")) {
        const u32 first = *p;
        *p = 0x0bad0bad;
        const u32 again = *p;
        const bool ok = first == 0xffffffffu && again == 0xffffffffu;
        printf("escape: %s: nothing at 0x%08x: read 0x%08x, after a write 0x%08x\n", ok ? "PASS" : "FAIL", u32(addr),
               first, again);
        return ok ? 0 : 0xbad;
    }
    if (do_read) {
        printf("escape: reading 0x%08x\n", u32(addr));
        u32 got = *p;
        printf("escape: FAIL: read outside RAM returned 0x%08x\n", got);
    }
    if (do_write) {
        printf("escape: writing 0x%08x\n", u32(addr));
        *p = 0x0bad0bad;
        printf("escape: FAIL: write outside RAM completed\n");
    }
    return 0xbad;
}

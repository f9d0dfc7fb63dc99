// bootinfo: the Multiboot v1 entry contract, as Keel's loader must honour it.
// The exit code is the number of the first failed check (0 if all pass):
//   1 EAX = 0x2BADB002
//   2 EFLAGS.IF = 0 at entry
//   3 CR0.PE = 1 and CR0.PG = 0 at entry
//   4 info flags have mem (bit 0) and mmap (bit 6)
//   5 the mmap is non-empty and not truncated (<= 64 entries)
//   6 a RAM range starts at 0
//   7 no RAM range overlaps the legacy hole 0xA0000-0xFFFFF
//   8 RAM ranges do not overlap one another
//   9 mem_lower = KiB of RAM from 0 (<= 640)
//  10 mem_upper = KiB of RAM contiguous from 1 MiB
//  11 the image [1 MiB, image_end) is RAM
//  12 the info structure and the mmap are RAM and outside the image
//  13 a command line is present (flags bit 2), in RAM, outside the image
//  14 `ram=N` given (e.g. ram=64M): the RAM ranges add up to N (else skipped as ok)
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "bootinfo";

namespace {

bool covered(u64 base, u64 length) {   // [base, base+length) within one RAM range
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type == 1 && base >= r.base && base + length <= r.base + r.length) return true;
    }
    return false;
}

u64 contiguous_from(u64 a) {
    u64 start = a;
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
    return a - start;
}

bool overlaps_image(u64 base, u64 length) { return base < image_end() && base + length > image_start(); }

}  // namespace

u32 guest_main() {
    Checks t;
    t.check(boot.magic == kMultibootMagic, "EAX = 0x2BADB002", "eax=0x%08x", boot.magic);
    t.check(!(boot.entry_eflags & (1u << 9)), "interrupts off at entry", "eflags=0x%08x", boot.entry_eflags);
    t.check((boot.entry_cr0 & 1) && !(boot.entry_cr0 & 0x80000000u), "protected mode, paging off",
            "cr0=0x%08x cr4=0x%08x cs=0x%x ds=0x%x ss=0x%x es=0x%x", boot.entry_cr0, boot.entry_cr4, boot.entry_cs,
            boot.entry_ds, boot.entry_ss, boot.entry_es);
    t.check((boot.flags & 0x41) == 0x41, "info flags mem+mmap", "mbi=0x%x flags=0x%x", boot.mbi_addr, boot.flags);
    t.check(boot.mmap_count > 0 && !boot.mmap_truncated, "mmap present", "%u entries at 0x%x length %u%s",
            boot.mmap_count, boot.mmap_addr, boot.mmap_length, boot.mmap_truncated ? " (truncated)" : "");

    u64 ram = 0;
    bool from_zero = false, hole_clear = true, disjoint = true;
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        printf("bootinfo: mmap 0x%09llx-0x%09llx type %u\n", r.base, r.base + r.length - 1, r.type);
        if (r.type != 1 || r.length == 0) continue;
        ram += r.length;
        if (r.base == 0) from_zero = true;
        if (r.base < 0x100000 && r.base + r.length > 0xA0000) hole_clear = false;
        for (u32 j = 0; j < i; ++j) {
            const MemRegion& q = boot.mmap[j];
            if (q.type == 1 && q.length && r.base < q.base + q.length && q.base < r.base + r.length) disjoint = false;
        }
    }
    printf("bootinfo: %llu KiB of RAM in the map\n", ram >> 10);
    t.check(from_zero, "RAM starts at 0");
    t.check(hole_clear, "legacy hole 0xA0000-0xFFFFF is not RAM");
    t.check(disjoint, "RAM ranges disjoint");

    u64 low = contiguous_from(0) >> 10;
    u64 high = contiguous_from(0x100000) >> 10;
    t.check(boot.has_mem && boot.mem_lower_kib == low && low <= 640, "mem_lower matches the map",
            "mem_lower=%uK, map %lluK", boot.mem_lower_kib, low);
    t.check(boot.has_mem && boot.mem_upper_kib == high, "mem_upper matches the map", "mem_upper=%uK, map %lluK",
            boot.mem_upper_kib, high);

    t.check(covered(image_start(), image_end() - image_start()), "image is in RAM", "0x%x-0x%x", image_start(),
            image_end() - 1);
    bool mbi_ok = covered(boot.mbi_addr, boot.mbi_size) && !overlaps_image(boot.mbi_addr, boot.mbi_size) &&
                  covered(boot.mmap_addr, boot.mmap_length) && !overlaps_image(boot.mmap_addr, boot.mmap_length);
    t.check(mbi_ok, "info and mmap in RAM, outside the image", "info 0x%x, mmap 0x%x+%u", boot.mbi_addr,
            boot.mmap_addr, boot.mmap_length);
    u32 cl = boot.has_cmdline ? u32(strlen(boot.cmdline)) + 1 : 0;
    t.check(boot.has_cmdline && boot.cmdline_addr && covered(boot.cmdline_addr, cl) &&
                !overlaps_image(boot.cmdline_addr, cl),
            "command line present, in RAM, outside the image", "at 0x%x: \"%s\"", boot.cmdline_addr, boot.cmdline);

    // As GRUB and QEMU give it: the kernel's path first (argv[0]), then the arguments.
    usize w = 0;
    while (boot.cmdline[w] && boot.cmdline[w] != ' ') w++;
    const char kSelf[] = "bootinfo.elf";
    const usize ns = sizeof(kSelf) - 1;
    const bool argv0 = w >= ns && memcmp(boot.cmdline + w - ns, kSelf, ns) == 0 && (w == ns || boot.cmdline[w - ns - 1] == '/');
    t.check(argv0, "the command line starts with the kernel's path", "\"%s\"", boot.cmdline);

    u64 want = cmdline_u64("ram", 0);
    if (want)
        t.check(ram == want, "RAM total matches ram=", "map %llu KiB, ram= %llu KiB", ram >> 10, want >> 10);
    return t.finish();
}

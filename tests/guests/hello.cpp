// hello: the smallest guest. Prints a greeting and what the loader passed,
// then exits with code 0x2a, or N with `code=N` on the command line.
// With `hlt`, it halts with interrupts disabled instead (Keel must stop it).
// With `width=1|2`, it exits by OUTB/OUTW to the debug-exit port instead of OUTL
// (QEMU's isa-debug-exit takes any width: so must Keel).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "hello";

static const char* type_name(u32 type) {
    switch (type) {
    case 1: return "ram";
    case 2: return "reserved";
    case 3: return "acpi";
    case 4: return "nvs";
    case 5: return "bad";
    default: return "other";
    }
}

u32 guest_main() {
    puts("hello from keel guest\n");
    printf("hello: cmdline=\"%s\"\n", boot.cmdline);
    if (boot.has_mem)
        printf("hello: mem_lower=%uK mem_upper=%uK\n", boot.mem_lower_kib, boot.mem_upper_kib);
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        printf("hello: mmap 0x%09llx-0x%09llx %s\n", r.base, r.base + r.length - 1, type_name(r.type));
    }
    if (cmdline_flag("hlt")) {
        puts("hello: cli; hlt\n");
        asm volatile("cli; hlt");
        puts("hello: FAIL: resumed after hlt with interrupts disabled\n");
        return 0xbad;
    }
    u32 code = u32(cmdline_u64("code", 0x2a));
    printf("hello: exit code=%u\n", code);
    const u64 width = cmdline_u64("width", 4);
    if (width == 1) outb(0xf4, u8(code));
    if (width == 2) outw(0xf4, u16(code));
    if (width != 4) {
        printf("hello: FAIL: a %u-byte write to the debug-exit port did not end the guest\n", u32(width));
        return 0xbad;
    }
    return code;
}

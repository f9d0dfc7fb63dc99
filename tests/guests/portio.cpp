// portio: port I/O emulation. The exit code is the number of the first failed
// check (0 if all pass).
//  - unassigned ports read all-ones at every width (0x80 byte by immediate and by
//    DX; 0x210 word; 0x2A0 dword; `port=0xN` adds one tested at all widths), and
//    still do after writes to them (writes are ignored);
//  - string input (rep insb/insw/insd) from an unassigned port fills the buffer
//    with all-ones and advances EDI/ECX like hardware; rep outsb/outsw to one is ignored;
//  - the UART: LSR reports THR empty; the scratch register (0x3FF) round-trips
//    (assumed: Keel's 16550 keeps SCR like a real one; skip with `noscratch`);
//  - `rep outsb` of a line to the UART data port (0x3F8): the host test checks that
//    "portio: rep outsb to the uart works" appears on the console.
// The ports are unassigned under bare QEMU too (0x510, QEMU's fw_cfg, is not used).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "portio";

namespace {

Checks t;
constexpr u16 kUart = 0x3F8;

void check_unassigned(u16 port, int widths) {
    if (widths & 1) {
        u8 v = inb(port);
        t.check(v == 0xFF, "inb unassigned", "port 0x%x -> 0x%02x", port, v);
    }
    if (widths & 2) {
        u16 v = inw(port);
        t.check(v == 0xFFFF, "inw unassigned", "port 0x%x -> 0x%04x", port, v);
    }
    if (widths & 4) {
        u32 v = inl(port);
        t.check(v == 0xFFFFFFFF, "inl unassigned", "port 0x%x -> 0x%08x", port, v);
    }
}

template <typename T>
bool all_ones(const T* buf, usize n) {
    for (usize i = 0; i < n; ++i)
        if (buf[i] != T(~T(0))) return false;
    return true;
}

}  // namespace

u32 guest_main() {
    // Reads: immediate and DX forms.
    u8 imm;
    asm volatile("inb $0x80, %0" : "=a"(imm));
    t.check(imm == 0xFF, "inb $0x80 (immediate port)", "-> 0x%02x", imm);
    check_unassigned(0x80, 1);
    check_unassigned(0x210, 2);
    check_unassigned(0x2A0, 4);

    // Writes are ignored: the port still reads all-ones.
    outb(0x80, 0x12);
    outw(0x210, 0x3456);
    outl(0x2A0, 0x789abcde);
    check_unassigned(0x80, 1);
    check_unassigned(0x210, 2);
    check_unassigned(0x2A0, 4);

    u64 extra = cmdline_u64("port", ~0ull);
    if (extra <= 0xFFFF) {
        u16 p = u16(extra);
        check_unassigned(p, 7);
        outl(p, 0);
        check_unassigned(p, 7);
    }

    // String input from an unassigned port.
    {
        alignas(4) u8 b[16];
        memset(b, 0, sizeof b);
        u8* di = b;
        u32 cx = sizeof b;
        asm volatile("rep insb" : "+D"(di), "+c"(cx) : "d"(u16(0x80)) : "memory");
        t.check(all_ones(b, sizeof b) && cx == 0 && di == b + sizeof b, "rep insb from 0x80",
                "%02x..%02x ecx=%u edi advanced %u", b[0], b[15], cx, u32(di - b));
    }
    {
        alignas(4) u16 w[8];
        memset(w, 0, sizeof w);
        u16* di = w;
        u32 cx = 8;
        asm volatile("rep insw" : "+D"(di), "+c"(cx) : "d"(u16(0x210)) : "memory");
        t.check(all_ones(w, 8) && cx == 0 && di == w + 8, "rep insw from 0x210",
                "%04x..%04x ecx=%u edi advanced %u", w[0], w[7], cx, u32(di - w) * 2);
    }
    {
        alignas(4) u32 d[4];
        memset(d, 0, sizeof d);
        u32* di = d;
        u32 cx = 4;
        asm volatile("rep insl" : "+D"(di), "+c"(cx) : "d"(u16(0x2A0)) : "memory");
        t.check(all_ones(d, 4) && cx == 0 && di == d + 4, "rep insd from 0x2A0",
                "%08x..%08x ecx=%u edi advanced %u", d[0], d[3], cx, u32(di - d) * 4);
    }
    {
        static const u8 junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        const u8* si = junk;
        u32 cx = sizeof junk;
        asm volatile("rep outsb" : "+S"(si), "+c"(cx) : "d"(u16(0x80)) : "memory");
        const u16* si16 = reinterpret_cast<const u16*>(junk);
        u32 cx16 = 4;
        asm volatile("rep outsw" : "+S"(si16), "+c"(cx16) : "d"(u16(0x210)) : "memory");
        t.check(cx == 0 && si == junk + 8 && cx16 == 0 && si16 == reinterpret_cast<const u16*>(junk) + 4,
                "rep outsb/outsw to unassigned ports ignored", "ecx=%u/%u", cx, cx16);
        check_unassigned(0x80, 1);
    }

    // The UART.
    u8 lsr = inb(kUart + 5);
    t.check(lsr & (1 << 5), "uart LSR THR-empty", "LSR=0x%02x", lsr);
    if (!cmdline_flag("noscratch")) {
        outb(kUart + 7, 0x5A);
        u8 a = inb(kUart + 7);
        outb(kUart + 7, 0xA5);
        u8 b = inb(kUart + 7);
        t.check(a == 0x5A && b == 0xA5, "uart scratch register round-trips", "wrote 5a/a5 read %02x/%02x", a, b);
    }

    // rep outsb of a whole line to the UART data port (no LSR polling: the
    // emulated UART takes a whole string exit at once).
    static const char line[] = "portio: rep outsb to the uart works\n";
    const char* si = line;
    u32 cx = sizeof line - 1;
    asm volatile("rep outsb" : "+S"(si), "+c"(cx) : "d"(kUart) : "memory");
    t.check(cx == 0 && si == line + sizeof line - 1, "rep outsb to the uart", "ecx=%u", cx);

    return t.finish();
}

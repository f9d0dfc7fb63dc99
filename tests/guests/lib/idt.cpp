#include "lib/idt.hpp"

namespace {

struct [[gnu::packed]] Gate { u16 lo, sel; u8 zero, type; u16 hi; };
struct [[gnu::packed]] Idtr { u16 limit; u32 base; };
alignas(8) Gate idt[256];

void set_gate(u32 v, u32 h) { idt[v] = Gate{u16(h), 0x08, 0, 0x8e, u16(h >> 16)}; }

} // namespace

volatile IdtForeign idt_foreign;

extern "C" void foreign_handler(u32 vector) {
    if (vector == 0xff) {
        idt_foreign.spurious = idt_foreign.spurious + 1;
        return;
    }
    if (idt_foreign.count == 0) idt_foreign.first = vector;
    idt_foreign.count = idt_foreign.count + 1;
    *reinterpret_cast<volatile u32*>(0xfee000b0u) = 0;   // EOI
}

// One 16-byte stub per vector from 0x20: it pushes its vector and joins foreign_common, which
// hands it to foreign_handler.
asm(".globl keel_foreign_stubs\n"
    "    .balign 16\n"
    "keel_foreign_stubs:\n"
    "    .set vec, 0x20\n"
    "    .rept 0xe0\n"
    "    .balign 16\n"
    "    pushl $vec\n"
    "    jmp foreign_common\n"
    "    .set vec, vec + 1\n"
    "    .endr\n"
    "foreign_common:\n"
    "    pushal\n    cld\n    pushl 32(%esp)\n    call foreign_handler\n    addl $4, %esp\n"
    "    popal\n    addl $4, %esp\n    iret\n");
extern "C" char keel_foreign_stubs[];

void idt_install() {
    Idtr old;
    asm volatile("sidt %0" : "=m"(old));
    const Gate* rt = reinterpret_cast<const Gate*>(old.base);
    for (u32 v = 0; v < 32 && v * sizeof(Gate) < u32(old.limit) + 1; v++) idt[v] = rt[v];
    for (u32 v = 0x20; v < 0x100; v++) set_gate(v, uptr(keel_foreign_stubs) + (v - 0x20) * 16);
    idt_load();
}

void idt_load() {
    const Idtr d{sizeof(idt) - 1, uptr(idt)};
    asm volatile("lidt %0" : : "m"(d));
}

void idt_set(u32 v, void (*isr)()) { set_gate(v, uptr(isr)); }

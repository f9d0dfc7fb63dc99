// Descriptor tables, CPU feature setup and the trap dispatcher with Keel's
// exception report: every exception prints what happened and halts that CPU.
#include "arch/x86_64/cpu.hpp"

#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/irq.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/mem/ptab_formats.hpp"

extern "C" char trap_stubs[];

namespace {

struct [[gnu::packed]] IdtEntry {
    u16 off0, sel;
    u8 ist, type;
    u16 off1;
    u32 off2, reserved;
};

alignas(16) IdtEntry idt[256];

struct [[gnu::packed]] DescPtr {
    u16 limit;
    u64 base;
};

IrqHandler handlers[256];

const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
    "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
    "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check", "#MC machine check",
    "#XM SIMD error", "#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
    "reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
    "#VC VMM communication", "#SX security", "reserved 31"};

[[noreturn]] void report_and_halt(const Frame &f)
{
    Cpu *c = cpu();
    const char *name = f.vector < 32 ? exception_names[f.vector] : "unexpected interrupt";
    log_error("EXCEPTION %s vector=%lu error=0x%lx cpu=%u", name, f.vector, f.error, c ? c->index : 0);
    log_error("  rip=%016lx cs=%04lx rflags=%016lx rsp=%016lx ss=%04lx", f.rip, f.cs, f.rflags, f.rsp, f.ss);
    log_error("  cr0=%016lx cr2=%016lx cr3=%016lx cr4=%016lx", x86::read_cr0(), x86::read_cr2(), x86::read_cr3(),
              x86::read_cr4());
    log_error("  rax=%016lx rbx=%016lx rcx=%016lx rdx=%016lx", f.rax, f.rbx, f.rcx, f.rdx);
    log_error("  rsi=%016lx rdi=%016lx rbp=%016lx r8 =%016lx", f.rsi, f.rdi, f.rbp, f.r8);
    log_error("  r9 =%016lx r10=%016lx r11=%016lx r12=%016lx", f.r9, f.r10, f.r11, f.r12);
    log_error("  r13=%016lx r14=%016lx r15=%016lx", f.r13, f.r14, f.r15);
    if (f.vector == 14)
        log_error("  page fault at %016lx: %s, %s, %s%s", x86::read_cr2(), f.error & 1 ? "protection" : "not present",
                  f.error & 2 ? "write" : "read", f.error & 4 ? "user" : "supervisor",
                  f.error & 16 ? ", instruction fetch" : "");
    log_error("cpu %u halted", c ? c->index : 0);
    x86::halt_forever();
}

void set_gate(unsigned v, unsigned ist)
{
    u64 a = reinterpret_cast<u64>(trap_stubs) + 16 * v;
    idt[v] = IdtEntry{u16(a), SEL_CODE64, u8(ist), 0x8e /* present, DPL0, interrupt gate */, u16(a >> 16),
                      u32(a >> 32), 0};
}

} // namespace

void register_irq(u8 vector, IrqHandler h) { handlers[vector] = h; }

extern "C" char msr_read_insn[], msr_write_insn[], msr_fault[];

extern "C" void trap(Frame *f)
{
    // msr_read_safe/msr_write_safe (guest_state.cpp): a #GP there means "no such MSR".
    if (f->vector == 13 && (f->rip == u64(msr_read_insn) || f->rip == u64(msr_write_insn))) {
        f->rip = u64(msr_fault);
        return;
    }
    if (f->vector >= 32 && handlers[f->vector]) {
        handlers[f->vector](*f);
        return;
    }
    if (f->vector == vec::SPURIOUS) return;
    if (f->vector == 2) {
        // An NMI is an interrupt, not a fault of Keel's (it may have arrived while a guest ran): note it, go on.
        log_warn("NMI on cpu %u", cpu()->index);
        return;
    }
    report_and_halt(*f);
}

namespace cpu_setup {

void init_idt()
{
    for (unsigned v = 0; v < 256; v++) set_gate(v, 0);
    set_gate(2, 1);    // NMI on its own stack
    set_gate(8, 2);    // #DF: the kernel stack may be the problem
    set_gate(18, 3);   // #MC
}

void load(Cpu &c)
{
    c.self = &c;
    u64 tss = reinterpret_cast<u64>(&c.tss);
    c.gdt[0] = 0;
    c.gdt[1] = 0x00af9b000000ffff;   // 64-bit code
    c.gdt[2] = 0x00cf93000000ffff;   // data
    c.gdt[3] = (sizeof(Tss) - 1) | (tss & 0xffffff) << 16 | 0x89ull << 40 | ((tss >> 24) & 0xff) << 56;
    c.gdt[4] = tss >> 32;
    c.tss.iomap_base = sizeof(Tss);  // no I/O bitmap

    DescPtr gdtr{sizeof(c.gdt) - 1, reinterpret_cast<u64>(c.gdt)};
    DescPtr idtr{sizeof(idt) - 1, reinterpret_cast<u64>(idt)};
    asm volatile("lgdt %0\n"
                 "pushq %1\n"
                 "leaq 1f(%%rip), %%rax\n"
                 "pushq %%rax\n"
                 "lretq\n"
                 "1:\n"
                 "mov %2, %%ds\n"
                 "mov %2, %%es\n"
                 "mov %2, %%ss\n"
                 "lidt %3\n"
                 "ltr %w4\n"
                 :
                 : "m"(gdtr), "i"(SEL_CODE64), "r"(u32(SEL_DATA)), "m"(idtr), "r"(u32(SEL_TSS))
                 : "rax", "memory");
    x86::wrmsr(x86::msr::GS_BASE, reinterpret_cast<u64>(&c));
}

void enable_features()
{
    auto f7 = x86::cpuid(7, 0);
    u64 cr4 = x86::read_cr4() | x86::cr4::PGE;
    if (f7.b & (1u << 7)) cr4 |= x86::cr4::SMEP;
    if (f7.b & (1u << 20)) cr4 |= x86::cr4::SMAP;
    x86::write_cr4(cr4);
    x86::write_cr0(x86::read_cr0() | x86::cr0::WP);
    x86::wrmsr(x86::msr::EFER, x86::rdmsr(x86::msr::EFER) | x86::efer::NXE);
    x86::wrmsr(x86::msr::PAT, HOST_PAT_VALUE);
}

} // namespace cpu_setup

// Descriptor tables, CPU feature setup and the trap dispatcher with Keel's
// exception report: every exception prints what happened and halts that CPU.
#include "arch/x86_64/cpu.hpp"

#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/irq.hpp"
#include "arch/x86_64/lapic.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/spinlock.hpp"
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

// Device vectors: the handler and its context, and how many CPUs are inside
// it (so irq_vector_free can wait them out). Allocated round robin, so a
// freed vector is not handed out again at once.
struct DeviceVector {
    DeviceIrqHandler handler;   // atomic; null: free
    void *ctx;
    u32 active;                 // atomic
    bool taken;                 // under device_lock
};
DeviceVector device_vectors[vec::DEVICE_LAST - vec::DEVICE_FIRST + 1];
Spinlock device_lock;
u32 device_next;
u64 strays;                     // atomic
u8 last_stray;                  // atomic

// An external interrupt on a device vector (or one nobody handles): handler, EOI.
void device_interrupt(u8 v)
{
    if (v >= vec::DEVICE_FIRST && v <= vec::DEVICE_LAST) {
        DeviceVector &d = device_vectors[v - vec::DEVICE_FIRST];
        // Announce before looking: irq_vector_free clears the handler, then waits for active == 0.
        __atomic_add_fetch(&d.active, 1, __ATOMIC_SEQ_CST);
        if (DeviceIrqHandler h = __atomic_load_n(&d.handler, __ATOMIC_SEQ_CST)) {
            h(__atomic_load_n(&d.ctx, __ATOMIC_ACQUIRE));
            __atomic_sub_fetch(&d.active, 1, __ATOMIC_RELEASE);
            lapic::eoi();
            return;
        }
        __atomic_sub_fetch(&d.active, 1, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&strays, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&last_stray, v, __ATOMIC_RELAXED);
    lapic::eoi();
}

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

Result<u8> irq_vector_alloc(DeviceIrqHandler h, void *ctx)
{
    if (!h) return Err::invalid;
    constexpr u32 N = vec::DEVICE_LAST - vec::DEVICE_FIRST + 1;
    Guard<Spinlock> g(device_lock);
    for (u32 k = 0; k < N; k++) {
        const u32 i = (device_next + k) % N;
        DeviceVector &d = device_vectors[i];
        if (d.taken) continue;
        d.taken = true;
        __atomic_store_n(&d.ctx, ctx, __ATOMIC_RELEASE);
        __atomic_store_n(&d.handler, h, __ATOMIC_SEQ_CST);
        device_next = (i + 1) % N;
        return u8(vec::DEVICE_FIRST + i);
    }
    return Err::busy;
}

void irq_vector_free(u8 v)
{
    if (v < vec::DEVICE_FIRST || v > vec::DEVICE_LAST) return;
    DeviceVector &d = device_vectors[v - vec::DEVICE_FIRST];
    Guard<Spinlock> g(device_lock);
    if (!d.taken) return;
    __atomic_store_n(&d.handler, nullptr, __ATOMIC_SEQ_CST);
    // A CPU that announced itself before the store may still be inside the handler.
    while (__atomic_load_n(&d.active, __ATOMIC_SEQ_CST)) x86::pause();
    d.ctx = nullptr;
    d.taken = false;
}

u64 irq_take_strays(u8 &last_vector)
{
    last_vector = __atomic_load_n(&last_stray, __ATOMIC_RELAXED);
    return __atomic_exchange_n(&strays, 0, __ATOMIC_RELAXED);
}

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
    if (f->vector >= 32 && f->vector < vec::SPURIOUS) {
        device_interrupt(u8(f->vector));   // a device's, or a stray one: acknowledged, never fatal
        return;
    }
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

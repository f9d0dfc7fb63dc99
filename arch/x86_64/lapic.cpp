#include "arch/x86_64/lapic.hpp"

#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/lib/console.hpp"

namespace lapic {
namespace {

bool x2_;
volatile u32 *mmio_;
u64 timer_hz_;

constexpr u64 APIC_BASE_EN = 1u << 11, APIC_BASE_EXTD = 1u << 10;

u32 read(Reg r)
{
    if (x2_) return u32(x86::rdmsr(x86::msr::X2APIC_BASE + (u32(r) >> 4)));
    return mmio_[u32(r) / 4];
}

void write(Reg r, u32 v)
{
    if (x2_) x86::wrmsr(x86::msr::X2APIC_BASE + (u32(r) >> 4), v);
    else mmio_[u32(r) / 4] = v;
}

bool send_icr(u32 dest, u32 low)
{
    if (x2_) {
        x86::wrmsr(x86::msr::X2APIC_BASE + 0x30, u64(dest) << 32 | low);
        return true;
    }
    write(Reg::icr_high, dest << 24);
    write(Reg::icr_low, low);
    // Bounded wait for the delivery status bit (xAPIC only).
    for (unsigned i = 0; i < 1000000; i++) {
        if (!(read(Reg::icr_low) & (1u << 12))) return true;
        x86::pause();
    }
    return false;
}

} // namespace

void setup(bool want_x2apic)
{
    x2_ = want_x2apic && (x86::cpuid(1).c & (1u << 21));
    if (!x2_) {
        u64 base = x86::rdmsr(x86::msr::APIC_BASE) & 0xffffff000ull;
        mmio_ = reinterpret_cast<volatile u32 *>(mm::map_mmio(PhysAddr(base), PAGE_SIZE).raw());
    }
}

void enable()
{
    u64 base = x86::rdmsr(x86::msr::APIC_BASE) | APIC_BASE_EN;
    x86::wrmsr(x86::msr::APIC_BASE, base);
    if (x2_) x86::wrmsr(x86::msr::APIC_BASE, base | APIC_BASE_EXTD);
    write(Reg::tpr, 0);
    write(Reg::lvt_lint0, 1u << 16);   // masked: Keel uses no 8259 PIC
    write(Reg::lvt_lint1, 0x400);      // NMI
    write(Reg::lvt_error, 1u << 16);
    write(Reg::svr, 0x100 | 0xff);     // enabled, spurious vector 0xff
}

bool x2apic() { return x2_; }
u32 id() { return x2_ ? read(Reg::id) : read(Reg::id) >> 24; }
void eoi() { write(Reg::eoi, 0); }

bool send_init(u32 apic_id) { return send_icr(apic_id, 0x4500); }
bool send_sipi(u32 apic_id, u64 page) { return send_icr(apic_id, 0x4600 | u32(page >> 12)); }

void calibrate_timer(u64 tsc_hz)
{
    write(Reg::timer_divide, 0x3);     // divide by 16
    write(Reg::lvt_timer, 1u << 16);   // masked while measuring
    write(Reg::timer_initial, 0xffffffff);
    time::delay_us(10000);
    u32 elapsed = 0xffffffff - read(Reg::timer_current);
    write(Reg::timer_initial, 0);
    timer_hz_ = u64(elapsed) * 100;
}

void start_timer(u8 vector, unsigned hz)
{
    write(Reg::timer_divide, 0x3);
    write(Reg::lvt_timer, (1u << 17) | vector);   // periodic
    write(Reg::timer_initial, u32(max<u64>(timer_hz_ / hz, 1)));
}

u64 timer_hz() { return timer_hz_; }

} // namespace lapic

// Interrupts between a guest's devices and its vCPUs: the local APICs' page and
// MSRs and the IOAPIC's page routed to their models, IOAPIC messages, IPIs
// between the guest's vCPUs, INIT/SIPI starting its application processors,
// and guest timer deadlines in host time.
#include "arch/x86_64/insn.hpp"
#include "kernel/hv/internal.hpp"

namespace hv {
namespace {

u64 guest_now(Vcpu &v) { return v.arch->guest_tsc(); }

// After the guest's access to its vCPU's APIC (the APIC's lock held): what must be looked at
// before the vCPU's next entry. What it sent is routed (ipi_out; route_ipis then asks the
// targets, this vCPU too for a self-IPI, to look). Interrupts are delivered again (check;
// deliver_interrupts also reads the timer's next event) unless the access was a write that does
// not depend on the time (an EOI, TPR, ICR...: the timer is untouched) and leaves no vector
// requested: then nothing deliverable changed here.
void after_access(Vcpu &v, bool timeless_write)
{
    if (!timeless_write || v.irq.lapic.irr_any()) v.irq.check = true;
    if (v.irq.lapic.has_outgoing()) v.irq.ipi_out = true;   // else nothing for route_ipis (an EOI, a timer write)
}

} // namespace

// The guest may move its APICs' page (IA32_APIC_BASE): any vCPU's current page is an APIC page.
bool LapicDevice::covers(u64 gpa) const
{
    for (u32 i = 0; i < g_->nvcpus; i++)
        if (g_->vcpus[i].irq.lapic.xapic_mmio_active() && (gpa & ~0xfffull) == g_->vcpus[i].irq.lapic.mmio_base()) return true;
    return false;
}

bool LapicDevice::covers_for(u32 vcpu, u64 gpa) const
{
    if (vcpu >= g_->nvcpus) return false;
    const LapicModel &l = g_->vcpus[vcpu].irq.lapic;
    return l.xapic_mmio_active() && (gpa & ~0xfffull) == l.mmio_base();
}

void LapicDevice::mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value)
{
    Vcpu &v = g_->vcpus[vcpu];
    Guard lk(v.irq.lock);
    // The APIC's registers are 32 bits wide, 16-byte aligned: other accesses read 0 and write nothing.
    if (size != 4 || (gpa & 3)) {
        if (!write) value = 0;
        return;
    }
    if (!v.irq.lapic.xapic_mmio_active()) {   // disabled or in x2APIC mode: the page is not the APIC
        if (!write) value = ~0u;
        return;
    }
    // (The guest's clock only for what depends on it: not for an EOI or an IPI sent.)
    const u32 off = u32(gpa & 0xfff);
    const bool timeless = write && !LapicModel::write_needs_time(off >> 4);
    if (write) v.irq.lapic.mmio_write(off, u32(value), timeless ? 0 : guest_now(v));
    else value = v.irq.lapic.mmio_read(off, guest_now(v));
    after_access(v, timeless);
}

bool LapicDevice::rdmsr(u32 vcpu, u32 msr, u64 &value, bool &ok)
{
    Vcpu &v = g_->vcpus[vcpu];
    Guard lk(v.irq.lock);
    const u64 now = guest_now(v);
    if (msr == 0x1b) value = v.irq.lapic.apic_base(), ok = true;
    else if (msr == 0x6e0) value = v.irq.lapic.tsc_deadline_read(now), ok = true;
    else if (msr >= LapicModel::MSR_FIRST && msr <= LapicModel::MSR_LAST) ok = v.irq.lapic.msr_read(msr, value, now);
    else return false;
    v.irq.check = true;
    return true;
}

bool LapicDevice::wrmsr(u32 vcpu, u32 msr, u64 value, bool &ok)
{
    Vcpu &v = g_->vcpus[vcpu];
    Guard lk(v.irq.lock);
    const bool timeless = msr >= LapicModel::MSR_FIRST && msr <= LapicModel::MSR_LAST &&
                          !LapicModel::write_needs_time(msr - LapicModel::MSR_FIRST);
    const u64 now = timeless ? 0 : guest_now(v);
    if (msr == 0x1b) ok = v.irq.lapic.set_apic_base(value);
    else if (msr == 0x6e0) v.irq.lapic.tsc_deadline_write(value, now), ok = true;
    else if (msr >= LapicModel::MSR_FIRST && msr <= LapicModel::MSR_LAST) ok = v.irq.lapic.msr_write(msr, value, now);
    else return false;
    after_access(v, timeless);
    return true;
}

// An IOAPIC message: to every local APIC it names (lowest priority: the first of them).
void ioapic_deliver(void *ctx, u32 dest, bool logical, u8 vector, u8 mode, bool level)
{
    Guest &g = *static_cast<Guest *>(ctx);
    if (mode != 0 && mode != 1 && mode != 4) return;   // INIT/SMI/ExtINT through the IOAPIC: not modelled
    for (u32 i = 0; i < g.nvcpus; i++) {
        Vcpu &to = g.vcpus[i];
        Guard lk(to.irq.lock);
        if (!to.irq.lapic.match_dest(dest, logical, true)) continue;
        if (mode == 4) to.irq.raise_nmi();   // NMI: edge, the vector is ignored
        else to.irq.lapic.accept(vector, level);
        __atomic_store_n(&to.irq.check, true, __ATOMIC_RELEASE);
        if (mode == 1) return;
    }
}

// An MSI/MSI-X message (Intel SDM 3, 11.11): the same interrupt message the IOAPIC sends, in
// address/data form. Address 0xFEExxxxx: destination in bits 19:12, logical in bit 2; data: vector
// and delivery mode. Edge always (the trigger bit is for level MSIs Keel's devices never send).
// Anything else is a DMA write to memory no device model makes: dropped.
void msi_deliver(void *ctx, u64 address, u32 data)
{
    if ((address >> 20) != 0xfee) return;
    ioapic_deliver(ctx, u32(address >> 12 & 0xff), address & 4, u8(data), u8(data >> 8 & 7), false);
}

// A PCI function's INTx line: an IOAPIC pin (the GSIs start at the IOAPIC's base 0).
void pci_intx(void *ctx, u32 gsi, bool level)
{
    Guest &g = *static_cast<Guest *>(ctx);
    Guard lk(g.ioapic_lock);
    g.ioapic.set_irq(gsi, level);
}

void IoapicDevice::mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value)
{
    Guard lk(g_->ioapic_lock);
    if (size != 4 || (gpa & 3)) {
        if (!write) value = 0;
        return;
    }
    if (write) g_->ioapic.mmio_write(u32(gpa & 0xfff), u32(value));
    else value = g_->ioapic.mmio_read(u32(gpa & 0xfff));
}

namespace {

// Is `to` a destination of this IPI from `from`? (Lowest priority goes to every match: the guest cannot tell.)
bool ipi_hits(const LapicModel::Ipi &ipi, Vcpu &from, Vcpu &to)
{
    switch (ipi.shorthand) {
    case 1: return &to == &from;
    case 2: return true;
    case 3: return &to != &from;
    default: {
        Guard lk(to.irq.lock);
        return to.irq.lapic.match_dest(ipi.dest, ipi.logical);
    }
    }
}

// INIT and start-up IPIs: an application processor that has not run yet (waiting for SIPI)
// starts in real mode at the vector's page, on its own CPU. INIT to a running vCPU is not modelled.
void start_ap(Guest &g, Vcpu &to, u8 delivery, u8 vector)
{
    Guard lk(g.lock);
    if (to.state != Vcpu::State::idle || g.state != Guest::State::running) return;
    if (delivery == 5) {
        Guard al(to.irq.lock);
        to.irq.lapic.init_signal();
        to.irq.nmi = false;   // the AP waits for its SIPI: nothing pending survives INIT
        to.init_seen = true;
        return;
    }
    if (!to.init_seen) return;   // a SIPI counts only after an INIT
    to.arch->start_at_sipi(vector);
    to.gprs = Gprs{};
    g.started++;
    to.state = Vcpu::State::runnable;
    to.ready_since = x86::rdtsc();
    rq_[to.cpu].push(&to);
}

} // namespace

// IPIs between the guest's own vCPUs: fixed and lowest priority to the APICs, NMI to the vCPUs' NMI
// latches, INIT/SIPI to start application processors.
void route_ipis(Guest &g, Vcpu &from)
{
    if (!from.irq.ipi_out) return;
    from.irq.ipi_out = false;
    // EOIs of level-triggered vectors go to the IOAPIC (outside the APIC's lock: it may deliver again).
    for (;;) {
        int vec;
        {
            Guard lk(from.irq.lock);
            vec = from.irq.lapic.take_eoi_broadcast();
        }
        if (vec < 0) break;
        Guard lk(g.ioapic_lock);
        g.ioapic.eoi(u8(vec));
    }
    LapicModel::Ipi ipi;
    for (;;) {
        {
            Guard lk(from.irq.lock);
            if (!from.irq.lapic.take_ipi(ipi)) return;
        }
        if (ipi.init_deassert) continue;
        if (ipi.delivery == 5 || ipi.delivery == 6) {   // INIT, start-up
            for (u32 i = 0; i < g.nvcpus; i++)
                if (ipi_hits(ipi, from, g.vcpus[i])) start_ap(g, g.vcpus[i], ipi.delivery, ipi.vector);
            continue;
        }
        if (ipi.delivery != 0 && ipi.delivery != 1 && ipi.delivery != 4) continue;
        for (u32 i = 0; i < g.nvcpus; i++) {
            Vcpu &to = g.vcpus[i];
            if (!ipi_hits(ipi, from, to)) continue;
            Guard lk(to.irq.lock);
            if (ipi.delivery == 4) to.irq.raise_nmi();   // NMI: also to a software-disabled APIC
            else to.irq.lapic.accept(ipi.vector, false);
            __atomic_store_n(&to.irq.check, true, __ATOMIC_RELEASE);
        }
    }
}

// A guest-TSC time of this vCPU as host TSC (the guest's TSC runs at the host's rate, offset).
u64 host_deadline(Vcpu &v, u64 guest_tsc) { return guest_tsc - (guest_now(v) - x86::rdtsc()); }

// A halted vCPU wakes when its local APIC has something for it.
bool wants_to_run(Vcpu &v) { return irq_wanted(v.irq, guest_now(v)); }

} // namespace hv

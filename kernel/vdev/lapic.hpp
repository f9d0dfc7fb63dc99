// A guest's local APIC, one per vCPU: the xAPIC page and the x2APIC MSRs,
// IA32_APIC_BASE, priorities (TPR/PPR), IRR/ISR/TMR, the error status, the
// timer (one-shot, periodic, TSC-deadline) and outgoing IPIs.
//
// No hardware, no globals. Time is the guest TSC ("now"), passed into every
// call that may look at the timer; the timer is evaluated lazily and
// next_event() says when to look again. What leaves the APIC is queued for the
// hypervisor to collect: IPIs (take_ipi) and EOIs of level-triggered vectors
// for the IOAPIC (take_eoi_broadcast). Interrupts enter through accept() and
// are injected by the hypervisor after pending()/ack().
//
// A zero-initialised LapicModel is a globally disabled APIC that ignores
// everything; reset() makes it the power-up APIC of one vCPU.
#pragma once

#include "kernel/lib/types.hpp"

namespace lapic_detail {
// floor(n / d) for a 128-bit n, saturated to ~0; d == 0 also saturates.
u64 div_sat(unsigned __int128 n, u64 d);
}

class LapicModel {
public:
    static constexpr u64 DEFAULT_BASE = 0xfee00000;
    static constexpr u64 BASE_BSP = 1u << 8, BASE_EXTD = 1u << 10, BASE_EN = 1u << 11;
    static constexpr u32 VERSION = 0x00050014;      // version 0x14, max LVT entry 5
    static constexpr u32 MSR_FIRST = 0x800, MSR_LAST = 0x8ff;
    static constexpr usize IPI_QUEUE = 8;

    // ESR bits
    static constexpr u32 ESR_SEND_ILLEGAL = 1u << 5, ESR_RECV_ILLEGAL = 1u << 6, ESR_ILLEGAL_REG = 1u << 7;

    // LVT entries, in the order of lvt()
    enum Lvt : u8 { LVT_CMCI, LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, NUM_LVT };
    static constexpr u32 LVT_MASKED = 1u << 16;

    struct Ipi {
        u32  dest;              // xAPIC: ICR[63:56]; x2APIC: ICR[63:32]
        u8   vector;            // SIPI: the start page; NMI/INIT/SMI: as written
        u8   delivery;          // 0 fixed, 1 lowest, 2 SMI, 4 NMI, 5 INIT, 6 SIPI
        u8   shorthand;         // 0 none, 1 self, 2 all incl. self, 3 all excl. self
        bool logical;
        bool level_assert;      // ICR bit 14
        bool init_deassert;     // INIT level de-assert: obsolete, a no-op on P4 and later
    };

    // Power-up state of the APIC of vCPU `apic_id` (IA32_APIC_BASE = 0xfee00000,
    // enabled, xAPIC mode). tsc_hz: the guest TSC rate, bus_hz: the timer's
    // input clock (both clamped to [1, 2^48]). x2apic: whether the guest may
    // enable x2APIC mode (CPUID.1:ECX[21]); phys_bits: the guest's MAXPHYADDR.
    void reset(u32 apic_id, bool bsp, u64 tsc_hz, u64 bus_hz, bool x2apic = true, u8 phys_bits = 46);
    // An INIT signal: registers to their power-up values; ID, IA32_APIC_BASE
    // and the mode are kept.
    void init_signal();

    // IA32_APIC_BASE (MSR 0x1b). set_apic_base() false: #GP (reserved bits,
    // illegal mode transition). Disabling resets the APIC state.
    u64  apic_base() const { return apic_base_; }
    bool set_apic_base(u64 v);
    bool enabled() const { return apic_base_ & BASE_EN; }           // globally
    bool x2apic_mode() const { return (apic_base_ & (BASE_EN | BASE_EXTD)) == (BASE_EN | BASE_EXTD); }
    bool xapic_mmio_active() const { return (apic_base_ & (BASE_EN | BASE_EXTD)) == BASE_EN; }
    u64  mmio_base() const { return apic_base_ & ~0xfffull; }
    bool sw_enabled() const { return svr_ & 0x100; }                // SVR bit 8

    // xAPIC page: 32-bit accesses at `offset` (0..0xfff) of the page; the
    // hypervisor routes only those while xapic_mmio_active(). Unaligned offsets
    // read 0 and ignore writes; unimplemented registers also log ESR bit 7.
    u32  mmio_read(u32 offset, u64 now);
    void mmio_write(u32 offset, u32 value, u64 now);
    // Whether a write to register `reg` (xAPIC offset >> 4, x2APIC MSR - 0x800) depends on the
    // time: the timer's registers, the LVTs and the SVR (which masks them: a timer due before
    // fires first). The others (EOI, ICR, TPR, ...) ignore `now`: a caller may skip reading the
    // guest's clock for them (the timer is brought up to date by the next pending()).
    static bool write_needs_time(u32 reg) { return reg >= 64 || !(TIMELESS_WRITES >> reg & 1); }
    // ID, TPR, EOI, LDR, DFR, ESR, ICR, ICR2, SELF IPI (lapic.cpp's register indices).
    static constexpr u64 TIMELESS_WRITES = 1ull << 0x02 | 1ull << 0x08 | 1ull << 0x0b | 1ull << 0x0d | 1ull << 0x0e |
                                           1ull << 0x28 | 1ull << 0x30 | 1ull << 0x31 | 1ull << 0x3f;

    // x2APIC MSRs 0x800-0x8ff. false: #GP (not in x2APIC mode, no such
    // register, read of a write-only / write of a read-only register, reserved
    // bits set, non-zero EOI or ESR write).
    bool msr_read(u32 msr, u64 &v, u64 now);
    bool msr_write(u32 msr, u64 v, u64 now);

    // IA32_TSC_DEADLINE (MSR 0x6e0): reads 0 and ignores writes unless the
    // timer is in TSC-deadline mode; 0 disarms; cleared when it fires.
    u64  tsc_deadline_read(u64 now);
    void tsc_deadline_write(u64 v, u64 now);

    // Fire the timer if it has expired by `now` (missed periods coalesce).
    void update(u64 now)
    {
        // Inline: most calls find no timer running (the work, and its frame, out of line).
        if (enabled() && (timer_mode() == MODE_DEADLINE ? deadline_ != 0 : armed_)) update_timer(now);
    }
    // Guest TSC at which the timer fires next, ~0 if never. Valid until the
    // next call that changes the APIC; a masked timer still has events.
    u64  next_event() const;

    // An interrupt message from the IOAPIC or an IPI (fixed / lowest priority).
    // Vectors 0-15 set ESR bit 6 and are dropped; a disabled APIC (globally or
    // by SVR) drops fixed interrupts. level: set the TMR bit (EOI broadcast).
    bool accept(u8 vector, bool level);
    // The vector to inject (the highest in IRR above the PPR's class), or -1.
    int  pending(u64 now);
    // The hypervisor injected `vector`: IRR -> ISR.
    void ack(u8 vector);
    // The next EOI of a level-triggered vector for the IOAPICs, or -1.
    int  take_eoi_broadcast();
    // The next IPI the guest sent (oldest first).
    bool take_ipi(Ipi &out);
    // Any vector requested (IRR), deliverable now or once the priorities allow it?
    bool irr_any() const { return any_set(irr_); }
    // Anything for the hypervisor to collect (an IPI, or an EOI for the IOAPICs)?
    bool has_outgoing() const { return ipi_count_ || any_set(eoi_bcast_); }
    u32  ipis_dropped() const { return ipi_drops_; }

    // Is this APIC a destination of the message? dest in the current mode's
    // format (xAPIC: 8 bits, flat or cluster logical per DFR; x2APIC: 32 bits,
    // cluster logical). short_dest: an 8-bit destination (IOAPIC, MSI, xAPIC
    // sender) whose 0xff is the broadcast also in x2APIC mode. Shorthands and
    // lowest-priority arbitration are the caller's.
    bool match_dest(u32 dest, bool logical, bool short_dest = false) const;

    u32  id() const { return x2apic_mode() ? apic_id_ : xapic_id_; }
    u8   tpr() const { return tpr_; }                   // CR8 = tpr() >> 4
    void set_tpr(u8 v) { tpr_ = v; }                    // mov cr8: set_tpr(u8(cr8 << 4))
    u32  ppr() const;
    u32  lvt(Lvt i) const { return i < NUM_LVT ? lvt_[i] : 0; }

private:
    enum : u8 { MODE_ONESHOT, MODE_PERIODIC, MODE_DEADLINE, MODE_RESERVED };

    void power_on();
    bool read_reg(u32 reg, u32 &v, u64 now);
    bool write_reg(u32 reg, u32 v, u64 now);
    void write_lvt(u32 i, u32 v, u64 now);
    void write_esr();
    void eoi();
    void error(u32 bits);
    void deliver_local(u8 vector);
    void send_ipi(u32 lo, u32 dest);
    void push_ipi(const Ipi &ipi);
    u32  x2apic_ldr() const;

    u8   timer_mode() const { return (lvt_[LVT_TIMER] >> 17) & 3; }
    void update_timer(u64 now);   // update() with a timer running
    u32  divisor() const;
    unsigned __int128 ticks(u64 now) const;
    u32  current_count(u64 now) const;
    void timer_start(u64 now, u32 count);

    // configuration
    u32 apic_id_ = 0;
    u64 tsc_hz_ = 0, bus_hz_ = 0;
    bool x2apic_ok_ = false;
    u8 phys_bits_ = 0;

    // architectural state
    u64 apic_base_ = 0;
    u8  xapic_id_ = 0, tpr_ = 0;
    u32 ldr_ = 0, dfr_ = 0, svr_ = 0;
    u32 irr_[8] = {}, isr_[8] = {}, tmr_[8] = {};
    // Any bit of a 256-bit vector set (64 bits at a time: these run on every APIC access).
    static bool any_set(const u32 (&b)[8])
    {
        u64 w[4];
        __builtin_memcpy(w, b, sizeof w);
        return (w[0] | w[1] | w[2] | w[3]) != 0;
    }
    u32 esr_ = 0, esr_new_ = 0;         // readable ESR, errors since the last ESR write
    bool esr_signalled_ = false;        // the error LVT fired since the last ESR write
    u32 lvt_[NUM_LVT] = {};
    u32 icr_lo_ = 0, icr_hi_ = 0;       // icr_hi_: xAPIC 0x310 layout or the x2APIC dest
    u32 tdcr_ = 0, initial_ = 0;

    // timer: counting since base_ (TSC) with offset_ ticks already elapsed;
    // fired_ periods have been signalled. Period k ends at tick k * initial_.
    bool armed_ = false;
    u64 base_ = 0, fired_ = 0, deadline_ = 0;
    u32 offset_ = 0;

    // outgoing
    u32 eoi_bcast_[8] = {};
    Ipi ipis_[IPI_QUEUE] = {};
    u8  ipi_head_ = 0, ipi_count_ = 0;
    u32 ipi_drops_ = 0;
};

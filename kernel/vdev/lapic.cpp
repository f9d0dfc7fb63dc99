#include "kernel/vdev/lapic.hpp"

using u128 = unsigned __int128;

namespace {

// Register index = xAPIC offset >> 4 = x2APIC MSR - 0x800.
enum : u32 {
    R_ID = 0x02, R_VER = 0x03, R_TPR = 0x08, R_APR = 0x09, R_PPR = 0x0a, R_EOI = 0x0b, R_RRD = 0x0c,
    R_LDR = 0x0d, R_DFR = 0x0e, R_SVR = 0x0f, R_ISR = 0x10, R_TMR = 0x18, R_IRR = 0x20, R_ESR = 0x28,
    R_CMCI = 0x2f, R_ICR = 0x30, R_ICR2 = 0x31, R_TIMER = 0x32, R_ERROR = 0x37, R_TMICT = 0x38,
    R_TMCCT = 0x39, R_TDCR = 0x3e, R_SELF_IPI = 0x3f,
};

// Writable bits of each LVT (LapicModel::Lvt order); delivery status (12) and
// LINT remote IRR (14) are read-only, always 0 here.
constexpr u32 LVT_RW[LapicModel::NUM_LVT] = { 0x107ff, 0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff };
constexpr u32 LVT_RO = 0x5000;

constexpr u32 SVR_RW = 0x3ff;
constexpr u32 ICR_RW = 0x000ccfff;      // vector, delivery mode, dest mode, level, trigger, shorthand
constexpr u32 ICR_BUSY = 1u << 12;
constexpr u32 TDCR_RW = 0xb;
constexpr u64 HZ_MAX = 1ull << 48;

bool test(const u32 (&b)[8], u8 v) { return b[v >> 5] >> (v & 31) & 1; }
void set(u32 (&b)[8], u8 v) { b[v >> 5] |= 1u << (v & 31); }
void clr(u32 (&b)[8], u8 v) { b[v >> 5] &= ~(1u << (v & 31)); }

int highest(const u32 (&b)[8])
{
    // 64 bits at a time (x86 is little-endian: b[2i] is the low half of word i).
    for (int i = 3; i >= 0; i--) {
        u64 w;
        __builtin_memcpy(&w, &b[2 * i], 8);
        if (w) return i * 64 + 63 - __builtin_clzll(w);
    }
    return -1;
}

u64 clamp_hz(u64 hz) { return hz < 1 ? 1 : hz > HZ_MAX ? HZ_MAX : hz; }

} // namespace

u64 lapic_detail::div_sat(u128 n, u64 d)
{
    const u64 hi = u64(n >> 64), lo = u64(n);
    if (!d || hi >= d) return ~0ull;
    if (!hi) return lo / d;

    // 128/64 with a 64-bit quotient in 32-bit digits (Knuth D, Hacker's Delight divlu).
    constexpr u64 b = 1ull << 32;
    const unsigned s = __builtin_clzll(d);
    d <<= s;
    const u64 vn1 = d >> 32, vn0 = d & 0xffffffff;
    const u64 un32 = s ? (hi << s) | (lo >> (64 - s)) : hi;
    const u64 un10 = lo << s, un1 = un10 >> 32, un0 = un10 & 0xffffffff;

    u64 q1 = un32 / vn1, rhat = un32 - q1 * vn1;
    while (q1 >= b || q1 * vn0 > b * rhat + un1) {
        q1--;
        rhat += vn1;
        if (rhat >= b) break;
    }
    const u64 un21 = un32 * b + un1 - q1 * d;
    u64 q0 = un21 / vn1;
    rhat = un21 - q0 * vn1;
    while (q0 >= b || q0 * vn0 > b * rhat + un0) {
        q0--;
        rhat += vn1;
        if (rhat >= b) break;
    }
    return q1 * b + q0;
}

using lapic_detail::div_sat;

// ---- state ---------------------------------------------------------------

void LapicModel::reset(u32 apic_id, bool bsp, u64 tsc_hz, u64 bus_hz, bool x2apic, u8 phys_bits)
{
    *this = LapicModel {};
    apic_id_ = apic_id;
    tsc_hz_ = clamp_hz(tsc_hz);
    bus_hz_ = clamp_hz(bus_hz);
    x2apic_ok_ = x2apic;
    phys_bits_ = phys_bits < 32 ? 32 : phys_bits > 52 ? 52 : phys_bits;
    apic_base_ = DEFAULT_BASE | BASE_EN | (bsp ? BASE_BSP : 0);
    power_on();
}

void LapicModel::init_signal()
{
    if (enabled()) power_on();
}

// Power-up register values. Queued IPIs and EOI broadcasts were already sent: kept.
void LapicModel::power_on()
{
    xapic_id_ = u8(apic_id_);
    tpr_ = 0;
    ldr_ = 0;
    dfr_ = ~0u;
    svr_ = 0xff;
    for (unsigned i = 0; i < 8; i++) irr_[i] = isr_[i] = tmr_[i] = 0;
    esr_ = esr_new_ = 0;
    esr_signalled_ = false;
    for (auto &l : lvt_) l = LVT_MASKED;
    icr_lo_ = icr_hi_ = 0;
    tdcr_ = initial_ = 0;
    armed_ = false;
    base_ = fired_ = deadline_ = 0;
    offset_ = 0;
}

bool LapicModel::set_apic_base(u64 v)
{
    const u64 reserved = 0xffull | 1u << 9 | (x2apic_ok_ ? 0 : BASE_EXTD) | ~((1ull << phys_bits_) - 1);
    if (!phys_bits_ || (v & reserved)) return false;            // never reset(): nothing to enable

    const bool en = v & BASE_EN, ext = v & BASE_EXTD;
    if (ext && !en) return false;                               // invalid state
    if (x2apic_mode() && en && !ext) return false;              // x2APIC -> xAPIC must go through disabled
    if (!enabled() && ext) return false;                        // disabled -> x2APIC must go through xAPIC

    if (enabled() && !en) power_on();
    apic_base_ = (v & ~BASE_BSP) | (apic_base_ & BASE_BSP);     // BSP is read-only
    return true;
}

u32 LapicModel::ppr() const
{
    const int isrv = highest(isr_);
    const u32 isr_class = isrv < 0 ? 0 : u32(isrv) & 0xf0;
    return (tpr_ & 0xf0u) >= isr_class ? tpr_ : isr_class;
}

u32 LapicModel::x2apic_ldr() const
{
    return (apic_id_ & ~0xfu) << 12 | 1u << (apic_id_ & 0xf);
}

bool LapicModel::match_dest(u32 dest, bool logical, bool short_dest) const
{
    if (!enabled()) return false;
    if (x2apic_mode()) {
        if (dest == ~0u || (short_dest && dest == 0xff)) return true;
        if (!logical) return dest == apic_id_;
        const u32 ldr = x2apic_ldr();
        return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffff);
    }
    dest &= 0xff;
    if (dest == 0xff) return true;
    if (!logical) return dest == xapic_id_;
    const u32 ld = ldr_ >> 24;
    switch (dfr_ >> 28) {
    case 0xf: return dest & ld;                                             // flat
    case 0x0: return ((dest >> 4) == 0xf || (dest >> 4) == (ld >> 4)) && (dest & ld & 0xf);   // cluster
    default: return false;
    }
}

// ---- interrupts ----------------------------------------------------------

void LapicModel::error(u32 bits)
{
    esr_new_ |= bits;
    if (esr_signalled_) return;         // once until software writes the ESR
    esr_signalled_ = true;
    const u32 l = lvt_[LVT_ERROR];
    if (l & LVT_MASKED) return;
    if ((l & 0xff) < 16) {
        esr_new_ |= ESR_RECV_ILLEGAL;
        return;
    }
    set(irr_, u8(l));
    clr(tmr_, u8(l));
}

void LapicModel::write_esr()
{
    esr_ = esr_new_;
    esr_new_ = 0;
    esr_signalled_ = false;
}

void LapicModel::deliver_local(u8 vector)
{
    if (vector < 16) {
        error(ESR_RECV_ILLEGAL);
        return;
    }
    set(irr_, vector);
    clr(tmr_, vector);
}

bool LapicModel::accept(u8 vector, bool level)
{
    if (!enabled()) return false;
    if (vector < 16) {
        error(ESR_RECV_ILLEGAL);
        return false;
    }
    if (!sw_enabled()) return false;
    set(irr_, vector);
    if (level) set(tmr_, vector);
    else clr(tmr_, vector);
    return true;
}

int LapicModel::pending(u64 now)
{
    update(now);
    if (!enabled() || !sw_enabled()) return -1;
    const int v = highest(irr_);
    if (v < 0 || (u32(v) & 0xf0) <= (ppr() & 0xf0)) return -1;
    return v;
}

void LapicModel::ack(u8 vector)
{
    if (!test(irr_, vector)) return;
    clr(irr_, vector);
    set(isr_, vector);
}

void LapicModel::eoi()
{
    const int v = highest(isr_);
    if (v < 0) return;
    clr(isr_, u8(v));
    if (test(tmr_, u8(v))) set(eoi_bcast_, u8(v));
}

int LapicModel::take_eoi_broadcast()
{
    const int v = highest(eoi_bcast_);
    if (v >= 0) clr(eoi_bcast_, u8(v));
    return v;
}

void LapicModel::send_ipi(u32 lo, u32 dest)
{
    const u8 vector = u8(lo), mode = (lo >> 8) & 7;
    if (mode == 3 || mode == 7) return;                         // reserved delivery modes
    if (mode <= 1 && vector < 16) {
        error(ESR_SEND_ILLEGAL);
        return;
    }
    const bool assert = lo & (1u << 14), trigger_level = lo & (1u << 15);
    push_ipi({ dest, vector, mode, u8((lo >> 18) & 3), bool(lo & (1u << 11)), assert,
               mode == 5 && !assert && trigger_level });
}

void LapicModel::push_ipi(const Ipi &ipi)
{
    if (ipi_count_ == IPI_QUEUE) {
        ipi_drops_++;
        return;
    }
    ipis_[(ipi_head_ + ipi_count_) % IPI_QUEUE] = ipi;
    ipi_count_++;
}

bool LapicModel::take_ipi(Ipi &out)
{
    if (!ipi_count_) return false;
    out = ipis_[ipi_head_];
    ipi_head_ = (ipi_head_ + 1) % IPI_QUEUE;
    ipi_count_--;
    return true;
}

// ---- timer ---------------------------------------------------------------

u32 LapicModel::divisor() const
{
    const u32 i = (tdcr_ >> 1 & 4) | (tdcr_ & 3);
    return i == 7 ? 1 : 2u << i;
}

// Timer ticks since the count was last (re)loaded from initial_.
u128 LapicModel::ticks(u64 now) const
{
    const u64 dt = now > base_ ? now - base_ : 0;               // the guest TSC may go back
    return u128(div_sat(u128(dt) * bus_hz_, tsc_hz_ * divisor())) + offset_;
}

void LapicModel::timer_start(u64 now, u32 count)
{
    armed_ = count && initial_;
    base_ = now;
    fired_ = 0;
    offset_ = armed_ ? initial_ - count : 0;
}

u32 LapicModel::current_count(u64 now) const
{
    if (!armed_ || timer_mode() == MODE_DEADLINE) return 0;
    const u128 t = ticks(now);
    const u64 n = div_sat(t, initial_);
    if (timer_mode() == MODE_PERIODIC) return initial_ - u32(t - u128(n) * initial_);
    return n > fired_ ? 0 : u32((u128(fired_) + 1) * initial_ - t);
}

void LapicModel::update_timer(u64 now)
{
    if (!enabled()) return;
    if (timer_mode() == MODE_DEADLINE) {
        if (!deadline_ || now < deadline_) return;
        deadline_ = 0;
    } else {
        if (!armed_) return;
        const u64 n = div_sat(ticks(now), initial_);
        if (n <= fired_) return;
        if (timer_mode() == MODE_PERIODIC) fired_ = n;          // base_ stays: no drift
        else armed_ = false;
    }
    if (!(lvt_[LVT_TIMER] & LVT_MASKED)) deliver_local(u8(lvt_[LVT_TIMER]));
}

u64 LapicModel::next_event() const
{
    if (!enabled()) return ~0ull;
    if (timer_mode() == MODE_DEADLINE) return deadline_ ? deadline_ : ~0ull;
    if (!armed_) return ~0ull;
    // first TSC at which ticks() reaches the end of period fired_ + 1
    const u128 t = (u128(fired_) + 1) * initial_ - offset_;
    // ticks() saturates (a bus far faster than the TSC, near the end of TSC time): a period
    // ending beyond what it can count never ends. (Its TSC would be in the past: update()
    // would not fire there, and a caller waking up for it would spin.)
    if (t > ~0ull) return ~0ull;
    const u64 dt = div_sat(t * (tsc_hz_ * divisor()) + (bus_hz_ - 1), bus_hz_);
    return dt >= ~0ull - base_ ? ~0ull : base_ + dt;
}

u64 LapicModel::tsc_deadline_read(u64 now)
{
    update(now);
    return enabled() && timer_mode() == MODE_DEADLINE ? deadline_ : 0;
}

void LapicModel::tsc_deadline_write(u64 v, u64 now)
{
    update(now);
    if (!enabled() || timer_mode() != MODE_DEADLINE) return;
    deadline_ = v;
    update(now);
}

void LapicModel::write_lvt(u32 i, u32 v, u64 now)
{
    v &= LVT_RW[i];
    if (!sw_enabled()) v |= LVT_MASKED;
    if (i == LVT_TIMER) {
        const u8 old = timer_mode(), mode = (v >> 17) & 3;
        if ((old == MODE_DEADLINE) != (mode == MODE_DEADLINE)) {    // switching to/from TSC-deadline disarms
            initial_ = 0;
            armed_ = false;
            deadline_ = 0;
        }
    }
    lvt_[i] = v;
}

// ---- registers -----------------------------------------------------------

// The registers common to both modes (x2APIC reserved-bit checks are the caller's).
bool LapicModel::read_reg(u32 reg, u32 &v, u64 now)
{
    switch (reg) {
    case R_VER: v = VERSION; return true;
    case R_TPR: v = tpr_; return true;
    case R_PPR: v = ppr(); return true;
    case R_SVR: v = svr_; return true;
    case R_ESR: v = esr_; return true;
    case R_CMCI: v = lvt_[LVT_CMCI]; return true;
    case R_TMICT: v = initial_; return true;
    case R_TMCCT: v = current_count(now); return true;
    case R_TDCR: v = tdcr_; return true;
    }
    if (reg >= R_ISR && reg < R_ISR + 8) v = isr_[reg - R_ISR];
    else if (reg >= R_TMR && reg < R_TMR + 8) v = tmr_[reg - R_TMR];
    else if (reg >= R_IRR && reg < R_IRR + 8) v = irr_[reg - R_IRR];
    else if (reg >= R_TIMER && reg <= R_ERROR) v = lvt_[reg - R_TIMER + LVT_TIMER];
    else return false;
    return true;
}

bool LapicModel::write_reg(u32 reg, u32 v, u64 now)
{
    switch (reg) {
    case R_TPR:
        tpr_ = u8(v);
        return true;
    case R_SVR:
        svr_ = v & SVR_RW;
        if (!sw_enabled())
            for (auto &l : lvt_) l |= LVT_MASKED;
        return true;
    case R_CMCI:
        write_lvt(LVT_CMCI, v, now);
        return true;
    case R_TMICT:
        if (timer_mode() == MODE_DEADLINE) return true;         // ignored in TSC-deadline mode
        initial_ = v;
        timer_start(now, v);
        return true;
    case R_TDCR: {
        const u32 count = current_count(now);                   // keep counting from here at the new rate
        tdcr_ = v & TDCR_RW;
        if (armed_) timer_start(now, count);
        return true;
    }
    }
    if (reg >= R_TIMER && reg <= R_ERROR) {
        write_lvt(reg - R_TIMER + LVT_TIMER, v, now);
        return true;
    }
    return false;
}

u32 LapicModel::mmio_read(u32 offset, u64 now)
{
    if (!xapic_mmio_active() || offset >= 0x1000 || (offset & 0xf)) return 0;
    update(now);
    const u32 reg = offset >> 4;
    u32 v = 0;
    switch (reg) {
    case R_ID: return u32(xapic_id_) << 24;
    case R_APR: case R_RRD: case R_EOI: return 0;               // APR unused since P4; EOI is write-only
    case R_LDR: return ldr_;
    case R_DFR: return dfr_;
    case R_ICR: return icr_lo_;
    case R_ICR2: return icr_hi_;
    }
    if (!read_reg(reg, v, now)) error(ESR_ILLEGAL_REG);
    return v;
}

static_assert(LapicModel::TIMELESS_WRITES == (1ull << R_ID | 1ull << R_TPR | 1ull << R_EOI | 1ull << R_LDR | 1ull << R_DFR |
                                              1ull << R_ESR | 1ull << R_ICR | 1ull << R_ICR2 | 1ull << R_SELF_IPI));

void LapicModel::mmio_write(u32 offset, u32 value, u64 now)
{
    if (!xapic_mmio_active() || offset >= 0x1000 || (offset & 0xf)) return;
    const u32 reg = offset >> 4;
    if (write_needs_time(reg)) update(now);
    switch (reg) {
    case R_ID: xapic_id_ = u8(value >> 24); return;
    case R_LDR: ldr_ = value & 0xff000000; return;
    case R_DFR: dfr_ = value | 0x0fffffff; return;
    case R_EOI: eoi(); return;
    case R_ESR: write_esr(); return;
    case R_ICR:
        icr_lo_ = value & ICR_RW;
        send_ipi(icr_lo_, icr_hi_ >> 24);
        return;
    case R_ICR2: icr_hi_ = value & 0xff000000; return;
    case R_VER: case R_APR: case R_PPR: case R_RRD: case R_TMCCT: return;     // read-only
    }
    if (reg >= R_ISR && reg < R_IRR + 8) return;                // ISR, TMR, IRR: read-only
    if (!write_reg(reg, value, now)) error(ESR_ILLEGAL_REG);
}

bool LapicModel::msr_read(u32 msr, u64 &v, u64 now)
{
    if (!x2apic_mode() || msr < MSR_FIRST || msr > MSR_LAST) return false;
    update(now);
    const u32 reg = msr - MSR_FIRST;
    switch (reg) {
    case R_ID: v = apic_id_; return true;
    case R_LDR: v = x2apic_ldr(); return true;
    case R_ICR: v = u64(icr_hi_) << 32 | icr_lo_; return true;
    }
    u32 x = 0;
    if (!read_reg(reg, x, now)) return false;       // EOI, SELF IPI, DFR, APR, RRD, ICR2, reserved
    v = x;
    return true;
}

bool LapicModel::msr_write(u32 msr, u64 v, u64 now)
{
    if (!x2apic_mode() || msr < MSR_FIRST || msr > MSR_LAST) return false;
    const u32 reg = msr - MSR_FIRST;
    if (reg == R_ICR) {
        if (u32(v) & ~(ICR_RW | ICR_BUSY)) return false;
        icr_lo_ = u32(v) & ICR_RW;
        icr_hi_ = u32(v >> 32);
        send_ipi(icr_lo_, icr_hi_);
        return true;
    }
    if (v >> 32) return false;                      // bits 63:32 are reserved everywhere else
    const u32 x = u32(v);

    // Reserved bits set: #GP (read-only bits are ignored).
    u32 ok;
    switch (reg) {
    case R_TPR: case R_SELF_IPI: ok = 0xff; break;
    case R_EOI: case R_ESR: ok = 0; break;
    case R_SVR: ok = SVR_RW; break;
    case R_CMCI: ok = LVT_RW[LVT_CMCI] | LVT_RO; break;
    case R_TMICT: ok = ~0u; break;
    case R_TDCR: ok = TDCR_RW; break;
    default:
        if (reg < R_TIMER || reg > R_ERROR) return false;       // read-only or reserved
        ok = LVT_RW[reg - R_TIMER + LVT_TIMER] | LVT_RO;
    }
    if (x & ~ok) return false;

    if (write_needs_time(reg)) update(now);
    switch (reg) {
    case R_EOI: eoi(); return true;
    case R_ESR: write_esr(); return true;
    case R_SELF_IPI: send_ipi(x | 1u << 18, apic_id_); return true;     // fixed, shorthand self
    default: return write_reg(reg, x, now);
    }
}

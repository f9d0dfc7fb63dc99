#include "kernel/guest/vm_exits_impl.hpp"

#include "kernel/lib/console.hpp"

const char *exit_reason_name(ExitReason r)
{
    static const char *const names[] = {"cpuid", "hlt", "io", "rdmsr", "wrmsr", "npf", "shutdown", "intr",
                                        "nmi", "vmcall", "cr", "exception", "xsetbv", "irq_window", "invalid", "other",
                                        "cache_flush", "monitor", "rdpmc", "undefined", "machine_check"};
    static_assert(sizeof(names) / sizeof(names[0]) == usize(ExitReason::count));
    return u8(r) < u8(ExitReason::count) ? names[u8(r)] : "?";
}


namespace exits_detail {


// MSRs with fixed or software-kept values that every guest may read.
bool soft_rdmsr(u32 msr, u32 vcpu_index, u64 &v)
{
    switch (msr) {
    case 0x1b:   // IA32_APIC_BASE: xAPIC enabled at the default base; BSP flag on vCPU 0
        v = 0xfee00000 | (1u << 11) | (vcpu_index == 0 ? 1u << 8 : 0);
        return true;
    case 0x8b:   // IA32_BIOS_SIGN_ID (microcode revision): none
    case 0x17:   // IA32_PLATFORM_ID
        v = 0;
        return true;
    default:
        return false;
    }
}

// Values the hardware itself would refuse with #GP: checked before any backend takes them,
// so a guest cannot make a later VM entry fail (or an emulator accept what a CPU would not).
bool msr_value_valid(u32 msr, u64 v, unsigned va_bits)
{
    const unsigned unused = 64 - va_bits;
    const bool canonical = u64(i64(v << unused) >> unused) == v;
    switch (msr) {
    case 0xc0000082: case 0xc0000083: case 0xc0000100: case 0xc0000101: case 0xc0000102:
    case 0x175: case 0x176:
        return canonical;
    case 0xc0000084:   // SFMASK
    case 0xc0000103:   // TSC_AUX
        return v >> 32 == 0;
    default:
        return true;
    }
}

// XSETBV's rules (SDM vol. 1 13.3): x87 always, only supported components, AVX needs SSE,
// AVX-512's three together and with AVX.
bool xcr0_allowed(const GuestPlatform &p, u64 v)
{
    if (p.profile) return p.profile->xcr0_valid(v);
    if (!(v & 1) || (v & ~p.xcr0_supported)) return false;
    if ((v & 4) && !(v & 2)) return false;
    const u64 avx512 = 7u << 5;
    if ((v & avx512) && ((v & avx512) != avx512 || !(v & 4))) return false;
    if (((v >> 3) & 1) != ((v >> 4) & 1)) return false;   // MPX's two together
    return true;
}

// Is the MSR in the one table (kernel/guest/cpu_profile.cpp)? Then the guest's profile decides.
bool msr_known(u32 msr)
{
    usize n = 0;
    const MsrRule *rules = msr_rules(n);
    for (usize i = 0; i < n; i++)
        if (msr >= rules[i].first && msr <= rules[i].last) return true;
    return false;
}

// The MSR table decides: true when it did (`ok`: the access completed; false: #GP); false when
// the MSR is not in the table or exists with a valid value: the device/arch/soft paths store it.
bool profile_msr(GuestPlatform &p, u32 vcpu, u32 msr, bool write, Gprs &g, bool &ok)
{
    if (!msr_known(msr)) return false;
    ok = false;
    const MsrRule *r = msr_rule(*p.profile, msr);
    if (!r || !msr_exists(*p.profile, msr, write)) return true;   // hidden from this guest: #GP
    const u64 v = u64(u32(g.rdx)) << 32 | u32(g.rax);
    switch (r->access) {
    case MsrAccess::zero:
    case MsrAccess::zero_read_only:
        if (write) ok = v == 0;   // no state: only 0 is accepted
        else g.rax = 0, g.rdx = 0, ok = true;
        return true;
    default:
        break;
    }
    switch (msr) {
    case 0x1a0: {   // MISC_ENABLE: kept per vCPU; a bit Keel does not model (MWAIT, CPUID limit, XD
                    // disable, ...) cannot be set: #GP, as for a reserved bit
        if (vcpu >= GuestPlatform::MAX_VCPUS) return true;
        u64 &m = p.soft_msrs[vcpu].misc_enable;
        if (!write) {
            g.rax = u32(m), g.rdx = m >> 32;
        } else {
            if (v & ~(GuestPlatform::MISC_ENABLE_WRITABLE | GuestPlatform::MISC_ENABLE_READ_ONLY)) return true;
            m = (m & GuestPlatform::MISC_ENABLE_READ_ONLY) | (v & GuestPlatform::MISC_ENABLE_WRITABLE);
        }
        ok = true;
        return true;
    }
    case 0x48:   // SPEC_CTRL: the bits the guest's CPUID shows
        if (write && (v & ~p.profile->spec_ctrl_bits())) return true;
        break;
    case 0x49:   // PRED_CMD, FLUSH_CMD: bit 0 is the command
    case 0x10b:
        if (v & ~1ull) return true;
        break;
    }
    return false;
}

u32 device_in(GuestPlatform &p, IoDevice &d, u16 port, u8 size)
{
    u32 v = ~0u;
    Guard lk(p.io_lock);
    d.io(port, size, true, v);
    return v & size_mask(size);
}

void device_out(GuestPlatform &p, IoDevice &d, u16 port, u8 size, u32 v)
{
    Guard lk(p.io_lock);
    v &= size_mask(size);   // only the bytes the access writes
    d.io(port, size, false, v);
}

} // namespace exits_detail

ExitOutcome handle_exit(const ExitInfo &e, Gprs &g, VcpuOps &ops, GuestPlatform &p, u32 vcpu_index)
{
    return exits_detail::handle_exit_t(e, g, ops, p, vcpu_index);
}

ExitOutcome LoadedVcpu::handle(const ExitInfo &e, Gprs &g, GuestPlatform &p, u32 vcpu_index)
{
    return exits_detail::handle_exit_t<VcpuOps>(e, g, *this, p, vcpu_index);
}

ExitOutcome LoadedVcpu::enter(const RunGate &gate, Gprs &g, ExitInfo &e, GuestPlatform &p, u32 vcpu_index)
{
    return exits_detail::run_until<LoadedVcpu>(*this, *this, gate, g, e, p, vcpu_index);
}


u32 breakpoint_hits(u64 dr7, const u64 (&drs)[4], u64 addr, u8 size, BpAccess access, bool cr4_de)
{
    static constexpr u8 LEN_BYTES[4] = {1, 2, 8, 4};   // DR7 LENn encodings
    u32 hits = 0;
    for (unsigned i = 0; i < 4; i++) {
        if (!((dr7 >> (2 * i)) & 3)) continue;
        const unsigned rw = (dr7 >> (16 + 4 * i)) & 3, len = LEN_BYTES[(dr7 >> (18 + 4 * i)) & 3];
        const bool type_ok = access == BpAccess::io ? rw == 2 && cr4_de
                                                    : rw == 3 || (rw == 1 && access == BpAccess::write);
        if (!type_ok) continue;
        const u64 lo = drs[i] & ~u64(len - 1);
        if (addr < lo + len && lo < addr + size) hits |= 1u << i;
    }
    return hits;
}

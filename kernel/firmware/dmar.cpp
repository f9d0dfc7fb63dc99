// The ACPI DMA Remapping table (Intel VT-d 4.1, 8.1-8.4).
#include "kernel/firmware/dmar.hpp"

#include "kernel/lib/bytes.hpp"
#include "kernel/lib/why.hpp"

namespace dmar {
namespace {

constexpr u32 HDR = 48;            // ACPI header (36), width, flags, 10 reserved
constexpr u16 T_DRHD = 0, T_RMRR = 1;
constexpr u32 DRHD_MIN = 16, RMRR_MIN = 24, SCOPE_MIN = 6;
constexpr u64 PAGE = 4096;

using Why = WhyMsg<Report>;

// The device scopes in [off, end) of one structure, appended to out.scopes.
Status scopes(const u8 *t, u32 off, u32 end, Dmar &out, u32 &first, u32 &n, Report *why)
{
    first = out.n_scopes;
    n = 0;
    while (off < end) {
        if (end - off < SCOPE_MIN) return Why(why, Err::invalid).s("device scope at ").x(off).s(" is truncated");
        const u8 type = t[off], len = t[off + 1];
        if (len < SCOPE_MIN || len > end - off || (len - SCOPE_MIN) % 2)
            return Why(why, Err::invalid).s("device scope at ").x(off).s(": bad length ").d(len);
        const u32 hops = (len - SCOPE_MIN) / 2;
        if (type < 1 || type > 5) return Why(why, Err::invalid).s("device scope at ").x(off).s(": unknown type ").d(type);
        if (hops == 0) return Why(why, Err::invalid).s("device scope at ").x(off).s(": no path");
        if (hops > MAX_PATH) return Why(why, Err::unsupported).s("device scope at ").x(off).s(": path of ").d(hops).s(" hops");
        if (out.n_scopes == MAX_SCOPES) return Why(why, Err::unsupported).s("more than ").d(MAX_SCOPES).s(" device scopes");
        Scope &s = out.scopes[out.n_scopes++];
        s.type = ScopeType(type);
        s.enumeration_id = t[off + 4];
        s.start_bus = t[off + 5];
        s.n_path = u8(hops);
        for (u32 i = 0; i < hops; i++) {
            const u8 dev = t[off + 6 + 2 * i], fn = t[off + 7 + 2 * i];
            if (dev > 31 || fn > 7)
                return Why(why, Err::invalid).s("device scope at ").x(off).s(": path hop ").d(i).s(" is ").x(dev).s(".").x(fn);
            s.path[i] = {dev, fn};
        }
        n++;
        off += len;
    }
    return {};
}

} // namespace

Status parse(const u8 *t, u32 len, Dmar &out, Report *why)
{
    out = Dmar{};
    if (why) why->msg[0] = 0;
    if (!t || len < HDR) return Why(why, Err::invalid).s("table of ").d(len).s(" bytes is shorter than its header");
    if (load_u32(t + 4) != len) return Why(why, Err::invalid).s("length field ").d(load_u32(t + 4)).s(" is not ").d(len);
    out.host_address_width = u8(t[36] + 1);
    if (out.host_address_width < 32 || out.host_address_width > 64)
        return Why(why, Err::invalid).s("host address width ").d(out.host_address_width);
    out.intr_remap = t[37] & 1;
    out.x2apic_opt_out = t[37] >> 1 & 1;
    out.dma_ctrl_opt_in = t[37] >> 2 & 1;

    for (u32 off = HDR; off < len;) {
        if (len - off < 4) return Why(why, Err::invalid).s("structure at ").x(off).s(" is truncated");
        const u16 type = load_u16(t + off), slen = load_u16(t + off + 2);
        if (slen < 4 || slen > len - off)
            return Why(why, Err::invalid).s("structure at ").x(off).s(": bad length ").d(slen);
        const u32 end = off + slen;
        if (type == T_DRHD) {
            if (slen < DRHD_MIN) return Why(why, Err::invalid).s("DRHD at ").x(off).s(" is ").d(slen).s(" bytes");
            if (out.n_units == MAX_UNITS) return Why(why, Err::unsupported).s("more than ").d(MAX_UNITS).s(" DRHDs");
            Unit &u = out.units[out.n_units];
            u.include_all = t[off + 4] & 1;
            u.size = t[off + 5] & 0xf;
            u.segment = load_u16(t + off + 6);
            u.base = PhysAddr(load_u64(t + off + 8));
            if (!u.base.raw() || u.base.raw() % PAGE)
                return Why(why, Err::invalid).s("DRHD at ").x(off).s(": register base ").x(u.base.raw());
            // A unit that includes all devices lists only IOAPICs and HPETs (8.3): it must be
            // its segment's only such unit.
            for (u32 i = 0; i < out.n_units; i++) {
                if (out.units[i].base == u.base)
                    return Why(why, Err::invalid).s("DRHD at ").x(off).s(": register base ").x(u.base.raw()).s(" twice");
                if (u.include_all && out.units[i].include_all && out.units[i].segment == u.segment)
                    return Why(why, Err::invalid).s("DRHD at ").x(off).s(": a second INCLUDE_PCI_ALL unit on segment ").d(u.segment);
            }
            KEEL_TRY(scopes(t, off + DRHD_MIN, end, out, u.first_scope, u.n_scopes, why));
            if (u.include_all)
                for (u32 i = 0; i < u.n_scopes; i++) {
                    const ScopeType st = out.scopes[u.first_scope + i].type;
                    if (st == ScopeType::endpoint || st == ScopeType::bridge)
                        return Why(why, Err::invalid).s("DRHD at ").x(off).s(": INCLUDE_PCI_ALL with a PCI device scope");
                }
            out.n_units++;
        } else if (type == T_RMRR) {
            if (slen < RMRR_MIN) return Why(why, Err::invalid).s("RMRR at ").x(off).s(" is ").d(slen).s(" bytes");
            if (out.n_rmrrs == MAX_RMRRS) return Why(why, Err::unsupported).s("more than ").d(MAX_RMRRS).s(" RMRRs");
            Rmrr &r = out.rmrrs[out.n_rmrrs];
            r.segment = load_u16(t + off + 6);
            r.base = PhysAddr(load_u64(t + off + 8));
            r.limit = load_u64(t + off + 16);
            if (r.base.raw() % PAGE || r.limit < r.base.raw() || (r.limit + 1) % PAGE)
                return Why(why, Err::invalid).s("RMRR at ").x(off).s(": range ").x(r.base.raw()).s("..").x(r.limit);
            KEEL_TRY(scopes(t, off + RMRR_MIN, end, out, r.first_scope, r.n_scopes, why));
            for (u32 i = 0; i < r.n_scopes; i++) {
                const ScopeType st = out.scopes[r.first_scope + i].type;
                if (st != ScopeType::endpoint && st != ScopeType::bridge)
                    return Why(why, Err::invalid).s("RMRR at ").x(off).s(": a scope that is not a PCI device");
            }
            if (!r.n_scopes) return Why(why, Err::invalid).s("RMRR at ").x(off).s(" names no device");
            out.n_rmrrs++;
        } else {
            out.skipped++;
        }
        off = end;
    }
    if (!out.n_units) return Why(why, Err::invalid).s("no DRHD: no remapping hardware");
    return {};
}

} // namespace dmar

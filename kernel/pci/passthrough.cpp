// A host PCI function on a guest's bus (see passthrough.hpp).
#include "kernel/pci/passthrough.hpp"

namespace {

constexpr u16 CMD_MEM = 1u << 1, CMD_MASTER = 1u << 2;
constexpr u64 PAGE = BarMapping::PAGE;

bool power_of_two(u64 v) { return v && !(v & (v - 1)); }

} // namespace

PassthroughFunction::PassthroughFunction(const HostFunctionInfo &info, HostPort &port) : info_(info), port_(port)
{
    set_ids(info.ids);
    for (u32 b = 0; b < BARS; b++) {
        const HostFunctionInfo::Bar &bar = info.bars[b];
        if (bar.type == BarType::none) continue;
        if (!power_of_two(bar.size) || !set_bar(b, bar.type, bar.size, bar.prefetchable)) {
            why_ = "a BAR the guest's bus cannot describe";
            return;
        }
        if (bar.type == BarType::mem64) b++;
    }
    if (const u16 n = info.msix_vectors) {
        const HostFunctionInfo::Bar &t = info.bars[info.msix_table_bar % BARS];
        const HostFunctionInfo::Bar &p = info.bars[info.msix_pba_bar % BARS];
        const u64 table_end = u64(info.msix_table_offset) + 16ull * n;
        const u64 pba_end = u64(info.msix_pba_offset) + 8ull * ((n + 63) / 64);
        if (info.msix_table_bar >= BARS || info.msix_pba_bar >= BARS || t.type == BarType::none ||
            p.type == BarType::none || table_end > t.size || pba_end > p.size || info.msix_pba_offset % 8 ||
            info.msix_table_offset % 8) {
            why_ = "its MSI-X table or PBA is not inside a memory BAR";
            return;
        }
        vectors_ = n < MAX_MSIX ? n : u16(MAX_MSIX);
        if (!add_msix(vectors_, info.msix_table_bar, info.msix_table_offset, info.msix_pba_bar,
                      info.msix_pba_offset)) {
            why_ = "its MSI-X capability does not fit";
            return;
        }
    } else if (info.msi_vectors) {
        // MSI only: one vector (passthrough.hpp says why), masked per vector by the guest.
        if (!add_msi(1, true)) {
            why_ = "its MSI capability does not fit";
            return;
        }
        vectors_ = 1;
        msi_ = true;
    }
    u8 view[HostFunctionInfo::PCIE_MAX];
    if (const u8 n = pcie_view(info.pcie, info.pcie_len, view))
        (void)add_capability(0x10, view + 2, u8(n - 2));   // read-only (no write mask); left out if it does not fit
    ok_ = true;
}

u8 pcie_view(const u8 *in, u8 len, u8 (&out)[HostFunctionInfo::PCIE_MAX])
{
    if (len > HostFunctionInfo::PCIE_MAX || len < 0x24 || in[0] != 0x10) return 0;
    const u8 version = in[2] & 0xf;
    const u8 n = version >= 2 && len >= 0x3c ? 0x3c : 0x24;
    __builtin_memset(out, 0, sizeof(out));
    for (u8 i = 0; i < n; i++) out[i] = in[i];
    out[1] = 0;
    out[3] &= u8(~0x01);                           // PCIe Capabilities: Slot Implemented (bit 8) clear
    out[7] &= u8(~0x10);                           // Device Capabilities: Function Level Reset (bit 28) not offered
    out[0x0a] = out[0x0b] = 0;                     // Device Status
    out[0x13] &= 0x3f;                             // Link Status: the bandwidth notifications (RW1C) clear
    for (u8 i = 0x14; i < 0x24; i++) out[i] = 0;   // Slot and Root Port registers
    if (n == 0x3c) {
        out[0x2a] = out[0x2b] = 0;                 // Device Status 2
        out[0x33] = 0;                             // Link Status 2: equalisation (RW1C) and the rest above bit 7
        for (u8 i = 0x34; i < 0x3c; i++) out[i] = 0;   // Slot 2
    }
    return n;
}

bool PassthroughFunction::place_bars(u64 &next, u64 limit)
{
    for (u32 b = 0; b < BARS; b++) {
        const u64 size = bar_size(b);
        if (!size) continue;
        const u64 at = (next + size - 1) & ~(size - 1);
        if (at < next || at > limit || limit - at < size) return false;
        config_write(0x10 + 4 * b, 4, u32(at) | (config_read(0x10 + 4 * b, 4) & 0xf));
        if (info_.bars[b].type == BarType::mem64) config_write(0x14 + 4 * b, 4, u32(at >> 32));
        next = at + size;
    }
    return true;
}

bool PassthroughFunction::filtered(u32 bar, u64 offset, u8 size) const
{
    if (bar >= BARS || info_.bars[bar].type == BarType::none) return true;
    if (offset >= info_.bars[bar].size || info_.bars[bar].size - offset < size) return true;
    const u16 n = info_.msix_vectors;
    if (!n) return false;
    auto overlaps = [&](u32 in_bar, u64 start, u64 bytes) {
        return bar == in_bar && offset < start + bytes && start < offset + size;
    };
    // The whole host table and PBA, also the entries beyond what the guest is shown.
    return overlaps(info_.msix_table_bar, info_.msix_table_offset, 16ull * n) ||
           overlaps(info_.msix_pba_bar, info_.msix_pba_offset, 8ull * ((n + 63) / 64));
}

u64 PassthroughFunction::bar_read(u32 bar, u64 offset, u8 size)
{
    if (filtered(bar, offset, size)) {
        __atomic_fetch_add(&refused_, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return port_.bar_read(bar, offset, size);
}

void PassthroughFunction::bar_write(u32 bar, u64 offset, u8 size, u64 value)
{
    if (filtered(bar, offset, size)) {
        __atomic_fetch_add(&refused_, 1, __ATOMIC_RELAXED);
        return;
    }
    port_.bar_write(bar, offset, size, value);
}

void PassthroughFunction::command_written(u16 old_command)
{
    if ((command() ^ old_command) & CMD_MASTER) port_.set_bus_master(command() & CMD_MASTER);
    if ((command() ^ old_command) & CMD_MEM)
        for (u32 b = 0; b < BARS; b++) update_mapping(b);
}

void PassthroughFunction::bar_written(u32 bar) { update_mapping(bar); }

void PassthroughFunction::set_map_windows(const Window *w, u32 n)
{
    nwindows_ = 0;
    for (u32 i = 0; i < n && nwindows_ < MAX_WINDOWS; i++)
        if (w[i].base < w[i].end) windows_[nwindows_++] = w[i];
}

bool PassthroughFunction::mapping_for(u32 bar, u64 base, BarMapping &m) const
{
    m = BarMapping{};
    if (bar >= BARS || info_.bars[bar].type == BarType::none) return false;
    const u64 size = info_.bars[bar].size;
    if (size < PAGE || base % PAGE) return false;       // a sub-page BAR's page reaches beyond it
    bool inside = false;
    for (u32 i = 0; i < nwindows_; i++)
        inside |= base >= windows_[i].base && base < windows_[i].end && windows_[i].end - base >= size;
    if (!inside) return false;
    // The pages holding the host's whole MSI-X table and PBA (all its entries, not only the
    // guest's MAX_MSIX) stay out: [start, end) in the BAR, rounded out to pages.
    struct Hole {
        u64 start, end;
    } holes[2];
    u32 nholes = 0;
    if (const u16 n = info_.msix_vectors) {
        auto hole = [&](u32 in_bar, u64 offset, u64 bytes) {
            if (in_bar != bar) return;
            holes[nholes++] = {offset & ~(PAGE - 1), (offset + bytes + PAGE - 1) & ~(PAGE - 1)};
        };
        hole(info_.msix_table_bar, info_.msix_table_offset, 16ull * n);
        hole(info_.msix_pba_bar, info_.msix_pba_offset, 8ull * ((n + 63) / 64));
        if (nholes == 2 && holes[1].start < holes[0].start) {
            const Hole t = holes[0];
            holes[0] = holes[1];
            holes[1] = t;
        }
    }
    m.base = base;
    u64 at = 0;
    for (u32 i = 0; i <= nholes; i++) {
        const u64 end = i < nholes ? holes[i].start : size;
        if (end > at) m.ranges[m.count++] = {base + at, at, end - at};
        if (i < nholes && holes[i].end > at) at = holes[i].end;
    }
    return m.count != 0;
}

void PassthroughFunction::update_mapping(u32 bar)
{
    if (bar >= BARS || info_.bars[bar].type == BarType::none) return;
    BarMapping want;
    const bool on = (command() & CMD_MEM) && mapping_for(bar, bar_base(bar), want);
    if (mapped_[bar] && (!on || want.base != mapping_[bar].base)) {
        port_.unmap_bar(bar, mapping_[bar]);
        mapped_[bar] = false;
    }
    if (on && !mapped_[bar] && port_.map_bar(bar, want)) {
        mapping_[bar] = want;
        mapped_[bar] = true;
    }
}

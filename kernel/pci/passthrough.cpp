// A host PCI function on a guest's bus (see passthrough.hpp).
#include "kernel/pci/passthrough.hpp"

namespace {

constexpr u16 CMD_MASTER = 1u << 2;

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
    }
    ok_ = true;
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
}

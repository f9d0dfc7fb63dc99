// The PCI host bridge and its functions' configuration space (see pci.hpp).
//
// Every register is bytes plus a mask of the bits the guest may write, so an
// access of any width at any offset behaves as the hardware's byte enables
// would: read-only fields and reserved bits keep their value, a BAR keeps its
// size bits zero (writing all ones then reads back the size) and its type bits.
// What a write means beyond storing it (INTx Disable, MSI and MSI-X enables and
// masks) is looked at once the whole write is in.
#include "kernel/pci/pci.hpp"

namespace {

// Configuration header (type 0) offsets and bits.
enum : u32 {
    VENDOR = 0x00, DEVICE = 0x02, COMMAND = 0x04, STATUS = 0x06, REVISION = 0x08, CLASS = 0x09,
    CACHE_LINE = 0x0c, HEADER_TYPE = 0x0e, BAR0 = 0x10, SUBSYS_VENDOR = 0x2c, SUBSYS = 0x2e,
    CAP_PTR = 0x34, INT_LINE = 0x3c, INT_PIN = 0x3d,
};
constexpr u16 CMD_IO = 1u << 0, CMD_MEMORY = 1u << 1, CMD_MASTER = 1u << 2, CMD_INTX_DISABLE = 1u << 10;
constexpr u16 STS_INTERRUPT = 1u << 3, STS_CAP_LIST = 1u << 4;
constexpr u32 BAR_MEM64 = 0x4, BAR_PREFETCH = 0x8;
constexpr u8 CAP_MSI = 0x05, CAP_MSIX = 0x11;
// MSI (PCI 3.0, 6.8.1): Message Control at 2, after the ID and next pointer; with a 64-bit address
// the data is at 0x0C, the Mask Bits at 0x10 and the Pending Bits at 0x14.
enum : u32 { MSI_ADDR_LO = 4, MSI_ADDR_HI = 8, MSI_DATA = 0x0c, MSI_MASK = 0x10, MSI_PENDING = 0x14 };
constexpr u16 MSI_ENABLE = 1u << 0, MSI_MME = 7u << 4, MSI_64BIT = 1u << 7, MSI_PVM = 1u << 8;
constexpr u16 MSIX_ENABLE = 0x8000, MSIX_FN_MASK = 0x4000;

} // namespace

// ---------------------------------------------------------------- PciFunction

PciFunction::PciFunction()
{
    for (u32 i = 0; i < 4; i++) cfg_[VENDOR + i] = 0xff;     // nothing until set_ids
    wmask_[COMMAND] = u8(CMD_IO | CMD_MEMORY | CMD_MASTER);
    wmask_[COMMAND + 1] = u8(CMD_INTX_DISABLE >> 8);
    wmask_[CACHE_LINE] = 0xff;          // Linux writes it; nothing here caches
    wmask_[INT_LINE] = 0xff;            // scratch for the guest's own bookkeeping
}

void PciFunction::set_ids(const Ids &ids)
{
    auto put16 = [this](u32 at, u16 v) { cfg_[at] = u8(v), cfg_[at + 1] = u8(v >> 8); };
    put16(VENDOR, ids.vendor);
    put16(DEVICE, ids.device);
    cfg_[REVISION] = ids.revision;
    cfg_[CLASS] = u8(ids.class_code);
    cfg_[CLASS + 1] = u8(ids.class_code >> 8);
    cfg_[CLASS + 2] = u8(ids.class_code >> 16);
    put16(SUBSYS_VENDOR, ids.subsystem_vendor);
    put16(SUBSYS, ids.subsystem);
}

bool PciFunction::set_bar(u32 bar, BarType type, u64 size, bool prefetchable)
{
    const bool wide = type == BarType::mem64;
    if (bar >= BARS || (wide && bar + 1 >= BARS) || type == BarType::none) return false;
    if (size < 16 || (size & (size - 1)) || (!wide && size > 0x80000000ull)) return false;
    if (bars_[bar].type != BarType::none || bars_[bar].upper || (wide && (bars_[bar + 1].type != BarType::none || bars_[bar + 1].upper)))
        return false;
    bars_[bar] = {size, type, false};
    // The address bits above the size are writable; below it they read 0, and
    // bits 3:0 say memory, 32/64-bit and prefetchable (read-only).
    const u64 writable = ~(size - 1) & ~0xfull;
    const u32 flags = (wide ? BAR_MEM64 : 0) | (prefetchable ? BAR_PREFETCH : 0);
    const u32 at = BAR0 + 4 * bar;
    for (u32 i = 0; i < 4; i++) {
        cfg_[at + i] = u8(flags >> 8 * i);
        wmask_[at + i] = u8(writable >> 8 * i);
    }
    if (wide) {
        bars_[bar + 1] = {0, BarType::none, true};
        for (u32 i = 0; i < 4; i++) wmask_[at + 4 + i] = u8(writable >> (32 + 8 * i));
    }
    return true;
}

void PciFunction::set_interrupt_pin(u8 pin) { cfg_[INT_PIN] = pin <= 4 ? pin : 0; }

u8 PciFunction::add_capability(u8 id, const u8 *body, u8 len, const u8 *wmask)
{
    const u32 at = next_cap_;
    if (at == 0 || at + 2 + u32(len) > CONFIG_SIZE || (len && !body)) return 0;
    cfg_[at] = id;
    cfg_[at + 1] = 0;                                   // end of the list, for now
    for (u32 i = 0; i < len; i++) {
        cfg_[at + 2 + i] = body[i];
        wmask_[at + 2 + i] = wmask ? wmask[i] : 0;
    }
    if (last_cap_) cfg_[last_cap_ + 1] = u8(at);
    else cfg_[CAP_PTR] = u8(at);
    cfg_[STATUS] |= STS_CAP_LIST;
    last_cap_ = u8(at);
    // Capabilities are dword aligned (the pointers' low two bits are reserved).
    const u32 next = (at + 2 + len + 3) & ~3u;
    next_cap_ = next < CONFIG_SIZE ? u8(next) : 0;
    return u8(at);
}

bool PciFunction::add_msix(u16 vectors, u8 table_bar, u32 table_offset, u8 pba_bar, u32 pba_offset)
{
    if (msix_.vectors || vectors == 0 || vectors > MAX_MSIX || table_bar >= BARS || pba_bar >= BARS) return false;
    // The offsets share their dword with the BIR: 8-byte aligned (PCI 3.0, 6.8.2.4-5), inside the BAR.
    if ((table_offset | pba_offset) & 7) return false;
    const u64 table_end = u64(table_offset) + 16u * vectors, pba_end = u64(pba_offset) + 8 * ((vectors + 63) / 64);
    if (table_end > bars_[table_bar].size || pba_end > bars_[pba_bar].size) return false;
    if (table_bar == pba_bar && table_offset < pba_end && pba_offset < table_end) return false;

    const u16 control = u16(vectors - 1);               // table size, N - 1
    const u32 table = table_offset | table_bar, pba = pba_offset | pba_bar;
    const u8 body[10] = {u8(control), u8(control >> 8), u8(table), u8(table >> 8), u8(table >> 16), u8(table >> 24),
                         u8(pba), u8(pba >> 8), u8(pba >> 16), u8(pba >> 24)};
    const u8 wmask[10] = {0, u8((MSIX_ENABLE | MSIX_FN_MASK) >> 8)};
    const u8 at = add_capability(CAP_MSIX, body, sizeof(body), wmask);
    if (!at) return false;
    msix_.vectors = vectors;
    msix_.cap = at;
    msix_.table_bar = table_bar, msix_.table_offset = table_offset;
    msix_.pba_bar = pba_bar, msix_.pba_offset = pba_offset;
    for (u16 i = 0; i < vectors; i++) msix_.table[i][3] = 1;    // every vector starts masked
    return true;
}

bool PciFunction::add_msi(u8 vectors, bool maskable)
{
    if (msi_.vectors || vectors == 0 || vectors > MAX_MSI || (vectors & (vectors - 1))) return false;
    const u16 control = u16(__builtin_ctz(vectors) << 1 | MSI_64BIT | (maskable ? MSI_PVM : 0));
    // Everything after Message Control; the data's upper half (Extended Message Data) reads 0.
    u8 body[MSI_PENDING + 4 - 2] = {u8(control), u8(control >> 8)};
    u8 wmask[sizeof(body)] = {u8(MSI_ENABLE | MSI_MME)};
    auto mask = [&](u32 reg, u32 bits) {
        for (u32 i = 0; i < 4; i++) wmask[reg - 2 + i] = u8(bits >> 8 * i);
    };
    mask(MSI_ADDR_LO, ~3u);              // the address is dword aligned
    mask(MSI_ADDR_HI, ~0u);
    mask(MSI_DATA, 0xffff);
    if (maskable) mask(MSI_MASK, vectors == 32 ? ~0u : (1u << vectors) - 1);
    const u8 len = maskable ? u8(sizeof(body)) : u8(MSI_DATA + 2 - 2);
    const u8 at = add_capability(CAP_MSI, body, len, wmask);
    if (!at) return false;
    msi_ = {vectors, at, maskable};
    return true;
}

u32 PciFunction::config_read(u32 reg, u8 size) const
{
    u32 v = 0;
    for (u32 i = 0; i < size && i < 4; i++) {
        const u32 r = reg + i;
        v |= u32(r < CONFIG_SIZE ? cfg_[r] : 0) << 8 * i;   // 0x100-0xFFF: no extended capabilities
    }
    return v;
}

void PciFunction::config_write(u32 reg, u8 size, u32 value)
{
    const u16 old_control = msix_control();
    const u16 old_msi = msi_control();
    const u32 old_msi_mask = msi_.maskable ? config_read(msi_.cap + MSI_MASK, 4) : 0;
    const u16 old_command = command();
    u32 old_bars[BARS];
    __builtin_memcpy(old_bars, cfg_ + BAR0, sizeof(old_bars));
    for (u32 i = 0; i < size && i < 4; i++) {
        const u32 r = reg + i;
        if (r >= CONFIG_SIZE) break;
        const u8 b = u8(value >> 8 * i);
        cfg_[r] = u8((cfg_[r] & ~wmask_[r]) | (b & wmask_[r]));
    }
    if (command() != old_command) {
        update_intx();
        command_written(old_command);
    }
    if (msix_control() != old_control) {
        update_intx();          // MSI-X enabled: INTx is off
        deliver_pending();      // enabled or function unmasked: what was pending goes now
    }
    if (msi_control() != old_msi) update_intx();     // MSI enabled: INTx is off
    if (msi_control() != old_msi || (msi_.maskable && config_read(msi_.cap + MSI_MASK, 4) != old_msi_mask))
        msi_deliver_pending();  // enabled, more vectors or unmasked: what was pending goes now
    if (reg < BAR0 + 4 * BARS && reg + size > BAR0) {
        for (u32 b = 0; b < BARS; b++) {
            if (__builtin_memcmp(&old_bars[b], cfg_ + BAR0 + 4 * b, 4) == 0) continue;
            const u32 low = bars_[b].upper ? b - 1 : b;
            if (bars_[low].type != BarType::none) bar_written(low);
        }
    }
}

u64 PciFunction::bar_base(u32 bar) const
{
    if (bar >= BARS || bars_[bar].type == BarType::none) return 0;
    const u32 at = BAR0 + 4 * bar;
    u64 base = config_read(at, 4) & ~0xfull;
    if (bars_[bar].type == BarType::mem64) base |= u64(config_read(at + 4, 4)) << 32;
    return base;
}

u16 PciFunction::msix_control() const
{
    return msix_.vectors ? u16(config_read(msix_.cap + 2, 2)) : 0;
}

void PciFunction::deliver(u16 n)
{
    msix_.pba[n / 64] &= ~(1ull << (n % 64));
    const u32 *e = msix_.table[n];
    if (bus_ && bus_->sinks_.msi) bus_->sinks_.msi(bus_->sinks_.ctx, u64(e[1]) << 32 | e[0], e[2]);
}

void PciFunction::deliver_pending()
{
    if (!msix_enabled()) return;
    for (u16 n = 0; n < msix_.vectors; n++)
        if (msix_pending(n) && !vector_masked(n)) deliver(n);
}

void PciFunction::update_intx()
{
    const bool out = intx_ && !(command() & CMD_INTX_DISABLE) && !msix_enabled() && !msi_enabled();
    if (out == intx_out_) return;
    intx_out_ = out;
    if (bus_ && bus_->sinks_.intx && cfg_[INT_PIN]) bus_->sinks_.intx(bus_->sinks_.ctx, gsi_, out);
}

bool PciFunction::msix_access(u32 bar, u64 offset, u8 size, bool write, u64 &value)
{
    if (!msix_.vectors) return false;
    const bool in_table = bar == msix_.table_bar && offset >= msix_.table_offset &&
                          offset - msix_.table_offset < 16u * msix_.vectors;
    const bool in_pba = bar == msix_.pba_bar && offset >= msix_.pba_offset &&
                        offset - msix_.pba_offset < 8u * ((msix_.vectors + 63) / 64);
    if (!in_table && !in_pba) return false;
    // Software uses aligned dword or qword accesses (PCI 3.0, 6.8.2); others read 0, write nothing.
    if ((size != 4 && size != 8) || (offset & (size - 1))) {
        if (!write) value = 0;
        return true;
    }
    if (in_pba) {       // read-only
        const u64 off = offset - msix_.pba_offset;
        if (!write) {
            const u64 q = msix_.pba[off / 8];
            value = size == 8 ? q : u32(q >> (off & 4) * 8);
        }
        return true;
    }
    const u64 off = offset - msix_.table_offset;
    const u16 n = u16(off / 16);
    u32 *e = msix_.table[n];
    const u32 d = u32(off % 16 / 4);
    if (!write) {
        value = e[d];
        if (size == 8) value |= u64(e[d + 1]) << 32;
        return true;
    }
    for (u32 i = 0; i < size / 4u; i++) {
        const u32 v = u32(value >> 32 * i);
        if (d + i == 3) e[3] = v & 1;        // vector control: only the mask bit exists
        else if (d + i == 0) e[0] = v & ~3u; // the message address is dword aligned
        else e[d + i] = v;
    }
    if (msix_enabled() && msix_pending(n) && !vector_masked(n)) deliver(n);
    return true;
}

bool PciFunction::signal_msix(u16 n)
{
    if (!bus_) return false;
    Guard lk(bus_->lock_);
    if (!msix_enabled() || n >= msix_.vectors) return false;
    if (vector_masked(n)) msix_.pba[n / 64] |= 1ull << (n % 64);
    else deliver(n);
    return true;
}

u32 PciFunction::msi_enabled_vectors() const
{
    const u32 n = 1u << (msi_control() >> 4 & 7);
    return n < msi_.vectors ? n : msi_.vectors;   // MME above MMC (or reserved): what is offered
}

void PciFunction::set_msi_pending(u32 bits)
{
    for (u32 i = 0; i < 4; i++) cfg_[msi_.cap + MSI_PENDING + i] = u8(bits >> 8 * i);
}

void PciFunction::msi_deliver(u32 n)
{
    const u32 at = msi_.cap;
    if (msi_.maskable) set_msi_pending(msi_pending() & ~(1u << n));
    const u64 address = u64(config_read(at + MSI_ADDR_HI, 4)) << 32 | config_read(at + MSI_ADDR_LO, 4);
    // The function puts the message number in the data's low bits, as many as it was given.
    const u32 data = (config_read(at + MSI_DATA, 2) & ~(msi_enabled_vectors() - 1)) | n;
    if (bus_ && bus_->sinks_.msi) bus_->sinks_.msi(bus_->sinks_.ctx, address, data);
}

void PciFunction::msi_deliver_pending()
{
    if (!msi_enabled() || !msi_.maskable) return;
    const u32 pending = msi_pending();
    for (u32 n = 0; n < msi_enabled_vectors(); n++)
        if ((pending >> n & 1) && !msi_masked(n)) msi_deliver(n);
}

bool PciFunction::signal_msi(u16 n)
{
    if (!bus_) return false;
    Guard lk(bus_->lock_);
    if (!msi_enabled() || n >= msi_.vectors) return false;
    const u32 m = n & (msi_enabled_vectors() - 1);
    if (msi_masked(m)) set_msi_pending(msi_pending() | 1u << m);
    else msi_deliver(m);
    return true;
}

bool PciFunction::signal_vector(u16 n)
{
    return signal_msix(n) || signal_msi(n);
}

bool PciFunction::msix_on() const
{
    if (!bus_) return false;
    Guard lk(bus_->lock_);
    return msix_enabled();
}

void PciFunction::set_intx(bool asserted)
{
    if (!bus_) return;
    Guard lk(bus_->lock_);
    intx_ = asserted;
    if (asserted) cfg_[STATUS] |= STS_INTERRUPT;
    else cfg_[STATUS] &= u8(~STS_INTERRUPT);
    update_intx();
}

// ---------------------------------------------------------------- PciBus

PciBus::HostBridge::HostBridge()
{
    set_ids({HOST_VENDOR, HOST_DEVICE, 0x060000, 0, HOST_VENDOR, 0});
}

PciBus::PciBus(u64 ecam_base, u32 intx_gsi_base, const Sinks &sinks)
    : ecam_(ecam_base), gsi_base_(intx_gsi_base), sinks_(sinks)
{
    host_.bus_ = this;
    fns_[0] = &host_;
}

bool PciBus::plug(u32 dev, PciFunction &f)
{
    Guard lk(lock_);
    if (dev == 0 || dev >= MAX_DEVICES || fns_[dev] || f.bus_) return false;
    f.bus_ = this;
    f.gsi_ = intx_gsi(gsi_base_, dev, f.cfg_[INT_PIN] ? f.cfg_[INT_PIN] : 1);
    fns_[dev] = &f;
    return true;
}

u32 PciBus::config_read_locked(u32 dev, u32 fn, u32 reg, u8 size)
{
    const u32 ones = size >= 4 ? ~0u : (1u << 8 * size) - 1;
    const PciFunction *f = function(dev, fn);
    if (!f || reg >= 0x1000) return ones;          // no function: the read is Master-Aborted
    return f->config_read(reg, size);
}

void PciBus::config_write_locked(u32 dev, u32 fn, u32 reg, u8 size, u32 value)
{
    if (PciFunction *f = function(dev, fn); f && reg < 0x1000) f->config_write(reg, size, value);
}

u32 PciBus::config_read(u32 dev, u32 fn, u32 reg, u8 size)
{
    Guard lk(lock_);
    return config_read_locked(dev, fn, reg, size);
}

void PciBus::config_write(u32 dev, u32 fn, u32 reg, u8 size, u32 value)
{
    Guard lk(lock_);
    config_write_locked(dev, fn, reg, size, value);
}

bool PciBus::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port < CONFIG_ADDRESS || port > CONFIG_DATA + 3) return false;
    Guard lk(lock_);
    const u32 ones = size >= 4 ? ~0u : (1u << 8 * size) - 1;
    if (port < CONFIG_DATA) {
        // CONFIG_ADDRESS is a dword register; narrower accesses are not for it (PCI 3.0, 3.2.2.3.2).
        if (port != CONFIG_ADDRESS || size != 4) {
            if (in) value = ones;
        } else if (in) {
            value = address_;
        } else {
            address_ = value & 0x80fffffc;          // enable, bus, device, function, register
        }
        return true;
    }
    const u32 bus = address_ >> 16 & 0xff, dev = address_ >> 11 & 31, fn = address_ >> 8 & 7;
    const u32 reg = (address_ & 0xfc) + (port - CONFIG_DATA);
    // An access at 0xCFE of 4 bytes reaches past CONFIG_DATA: only its bytes up to 0xCFF are data.
    const u8 n = u8(size < 0xd00 - port ? size : 0xd00 - port);
    if (!(address_ & 0x80000000u) || bus != 0) {
        if (in) value = ones;
        return true;
    }
    if (in) {
        const u32 high = n >= 4 ? 0 : ones & ~((1u << 8 * n) - 1);
        value = (config_read_locked(dev, fn, reg, n) & (n >= 4 ? ~0u : (1u << 8 * n) - 1)) | high;
    } else {
        config_write_locked(dev, fn, reg, n, value);
    }
    return true;
}

PciFunction *PciBus::decode(u64 gpa, u32 &bar, u64 &offset) const
{
    for (u32 d = 0; d < MAX_DEVICES; d++) {
        PciFunction *f = fns_[d];
        if (!f || !(f->command() & CMD_MEMORY)) continue;
        for (u32 b = 0; b < PciFunction::BARS; b++) {
            const u64 base = f->bar_base(b), size = f->bars_[b].size;
            if (!base || gpa < base || gpa - base >= size) continue;
            bar = b;
            offset = gpa - base;
            return f;
        }
    }
    return nullptr;
}

bool PciBus::covers(u64 gpa) const
{
    if (gpa >= ecam_ && gpa - ecam_ < ECAM_BUS_BYTES) return true;
    Guard lk(lock_);
    u32 bar;
    u64 offset;
    return decode(gpa, bar, offset) != nullptr;
}

void PciBus::mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value)
{
    (void)vcpu;
    if (gpa >= ecam_ && gpa - ecam_ < ECAM_BUS_BYTES) {
        const u64 off = gpa - ecam_;
        const u32 dev = u32(off >> 15 & 31), fn = u32(off >> 12 & 7), reg = u32(off & 0xfff);
        Guard lk(lock_);
        // Configuration accesses are at most a dword (PCIe 4.0, 7.2.2): a qword is split in two.
        const u8 n = size > 4 ? 4 : size;
        if (write) {
            config_write_locked(dev, fn, reg, n, u32(value));
            if (size > 4) config_write_locked(dev, fn, reg + 4, 4, u32(value >> 32));
        } else {
            value = config_read_locked(dev, fn, reg, n);
            if (size > 4) value |= u64(config_read_locked(dev, fn, reg + 4, 4)) << 32;
        }
        return;
    }
    PciFunction *f;
    u32 bar = 0;
    u64 offset = 0;
    {
        Guard lk(lock_);
        f = decode(gpa, bar, offset);
        if (!f) {                       // decoding turned off since the exit was routed here
            if (!write) value = ~0ull;
            return;
        }
        if (f->msix_access(bar, offset, size, write, value)) return;
    }
    // The device's own registers, outside the bus lock (it may signal from here).
    if (write) f->bar_write(bar, offset, size, value);
    else value = f->bar_read(bar, offset, size);
}

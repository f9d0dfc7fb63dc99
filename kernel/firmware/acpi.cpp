// ACPI static table parser.
//
// Fields are assembled from bytes: firmware tables have no alignment
// guarantees worth relying on. Each decoder reads only below the table's
// validated length, so a short (older) table simply lacks the later fields.
#include "kernel/firmware/acpi.hpp"

#include "kernel/lib/bytes.hpp"

namespace {

constexpr u32 HDR = 36;             // standard description header

bool sig_eq(const void *a, const char *b, usize n = 4)
{
    const char *x = static_cast<const char *>(a);
    for (usize i = 0; i < n; i++)
        if (x[i] != b[i])
            return false;
    return true;
}

u8 checksum(const u8 *p, usize len)
{
    u8 sum = 0;
    for (usize i = 0; i < len; i++)
        sum = static_cast<u8>(sum + p[i]);
    return sum;
}

Gas load_gas(const u8 *p)
{
    return Gas{p[0], p[1], p[2], p[3], load_u64(p + 4)};
}

// Bounded view of one mapped table: reads past its length yield zero.
struct View {
    const u8 *p;
    u32       len;

    bool has(u32 off, u32 n) const { return off <= len && n <= len - off; }
    u8 u8_at(u32 off) const { return has(off, 1) ? p[off] : 0; }
    u16 u16_at(u32 off) const { return has(off, 2) ? load_u16(p + off) : 0; }
    u32 u32_at(u32 off) const { return has(off, 4) ? load_u32(p + off) : 0; }
    u64 u64_at(u32 off) const { return has(off, 8) ? load_u64(p + off) : 0; }
    Gas gas_at(u32 off) const { return has(off, 12) ? load_gas(p + off) : Gas{}; }
};

void add_bad(Acpi &a, const char *sig, Err e, PhysAddr pa)
{
    if (a.bad_count < Acpi::MAX_BAD) {
        AcpiBadTable &b = a.bad[a.bad_count];
        for (int i = 0; i < 4; i++)
            b.sig[i] = sig ? sig[i] : 0;
        b.err = e;
        b.pa = pa;
    }
    a.bad_count++;
}

// All mapping goes through here: a range wrapping past 2^64 is never
// passed to the caller's map(), whatever the tables say.
const u8 *map(AcpiMemory &mem, PhysAddr pa, usize len)
{
    if (!len || len - 1 > ~0ull - pa.raw())
        return nullptr;
    return mem.map(pa, len);
}

// Check the table at pa: readable header, sane length, fully readable,
// checksum zero. On success returns its length and copies its signature.
Result<u32> validate_table(AcpiMemory &mem, PhysAddr pa, char sig[4])
{
    for (int i = 0; i < 4; i++)
        sig[i] = 0;
    const u8 *h = map(mem, pa, HDR);
    if (!h)
        return Err::range;
    for (int i = 0; i < 4; i++)
        sig[i] = static_cast<char>(h[i]);
    u32 len = load_u32(h + 4);
    if (len < HDR)
        return Err::invalid;
    const u8 *t = map(mem, pa, len);
    if (!t)
        return Err::range;
    if (checksum(t, len))
        return Err::bad_checksum;
    return len;
}

// Validate and record one table; bad ones go to the bad list.
void add_table(Acpi &a, AcpiMemory &mem, PhysAddr pa)
{
    for (usize i = 0; i < a.table_count; i++)
        if (a.tables[i].pa.raw() == pa.raw())
            return;                     // listed twice: firmware quirk, harmless
    char sig[4];
    Result<u32> len = validate_table(mem, pa, sig);
    if (!len) {
        add_bad(a, sig, len.error(), pa);
        return;
    }
    if (a.table_count == Acpi::MAX_TABLES) {
        a.tables_truncated = true;
        return;
    }
    AcpiTable &t = a.tables[a.table_count++];
    for (int i = 0; i < 4; i++)
        t.sig[i] = sig[i];
    t.length = *len;
    t.pa = pa;
}

// Validate the root table and record its entries.
Status walk_root(Acpi &a, AcpiMemory &mem, PhysAddr root, bool xsdt)
{
    char sig[4];
    Result<u32> len = validate_table(mem, root, sig);
    if (!len)
        return len.error();
    if (!sig_eq(sig, xsdt ? "XSDT" : "RSDT"))
        return Err::invalid;

    u32 esz = xsdt ? 8 : 4;
    u32 n = (*len - HDR) / esz;         // a partial trailing entry is ignored
    for (u32 i = 0; i < n; i++) {
        // Re-map per entry: validating tables may have replaced the mapping.
        const u8 *e = map(mem, root + HDR + u64{i} * esz, esz);
        if (!e)
            return Err::range;
        u64 pa = xsdt ? load_u64(e) : load_u32(e);
        if (pa)
            add_table(a, mem, PhysAddr(pa));
    }
    a.xsdt = xsdt;
    a.root = root;
    return {};
}

// MADT entry minimum lengths, by type.
u8 madt_min_len(u8 type)
{
    switch (type) {
    case 0: return 8;       // processor local APIC
    case 1: return 12;      // I/O APIC
    case 2: return 10;      // interrupt source override
    case 3: return 8;       // NMI source
    case 4: return 6;       // local APIC NMI
    case 5: return 12;      // local APIC address override
    case 9: return 16;      // processor local x2APIC
    case 10: return 12;     // local x2APIC NMI
    default: return 2;
    }
}

void add_cpu(Madt &m, u32 apic_id, u32 uid, u32 flags, bool x2apic)
{
    // Online-capable (bit 1) was a reserved bit before MADT revision 5.
    bool usable = (flags & 1) || (m.revision >= 5 && (flags & 2));
    MadtCpu c{apic_id, uid, flags, x2apic, usable};

    // Some firmware lists a CPU both as LAPIC and x2APIC, or twice: keep
    // one, preferring an entry that says the CPU can be used.
    for (usize i = 0; i < m.cpu_count; i++) {
        if (m.cpus[i].apic_id != apic_id)
            continue;
        m.duplicate_cpus++;
        if (!m.cpus[i].usable && usable) {
            m.cpus[i] = c;
            m.usable_cpus++;
        }
        return;
    }
    if (m.cpu_count == Madt::MAX_CPUS) {
        m.cpus_truncated = true;
        return;
    }
    m.cpus[m.cpu_count++] = c;
    m.usable_cpus += usable;
}

template <class T, usize N>
bool push(T (&arr)[N], usize &count, const T &v)
{
    if (count == N)
        return false;
    arr[count++] = v;
    return true;
}

void parse_madt(Madt &m, View t, u8 revision)
{
    m.present = true;
    m.revision = revision;
    if (t.len < HDR + 8) {
        m.err = Err::invalid;
        return;
    }
    m.lapic_addr = load_u32(t.p + 36);
    m.flags = load_u32(t.p + 40);

    // Every entry is at least 2 bytes long, so this terminates.
    for (u32 off = HDR + 8; off < t.len;) {
        if (t.len - off < 2) {
            m.err = Err::invalid;
            return;
        }
        const u8 *e = t.p + off;
        u8 type = e[0], len = e[1];
        if (len < madt_min_len(type) || len > t.len - off) {
            m.err = Err::invalid;   // zero or short length, or overrunning the table
            return;
        }

        bool fit = true;
        switch (type) {
        case 0:
            if (e[3] != 0xff)       // 0xff is not a valid xAPIC id
                add_cpu(m, e[3], e[2], load_u32(e + 4), false);
            break;
        case 9:
            if (load_u32(e + 4) != 0xffffffff)
                add_cpu(m, load_u32(e + 4), load_u32(e + 12), load_u32(e + 8), true);
            break;
        case 1:
            fit = push(m.ioapics, m.ioapic_count, MadtIoapic{e[2], load_u32(e + 4), load_u32(e + 8)});
            break;
        case 2:
            fit = push(m.overrides, m.override_count,
                       MadtOverride{e[2], e[3], load_u16(e + 8), load_u32(e + 4)});
            break;
        case 3:
            fit = push(m.nmi_sources, m.nmi_source_count, MadtNmiSource{load_u16(e + 2), load_u32(e + 4)});
            break;
        case 4:
            fit = push(m.lapic_nmis, m.lapic_nmi_count,
                       MadtLapicNmi{e[2] == 0xff ? MadtLapicNmi::ALL : e[2], load_u16(e + 3), e[5]});
            break;
        case 10:
            fit = push(m.lapic_nmis, m.lapic_nmi_count,
                       MadtLapicNmi{load_u32(e + 4), load_u16(e + 2), e[8]});
            break;
        case 5:
            m.lapic_addr = load_u64(e + 4);
            break;
        default:
            break;
        }
        if (!fit)
            m.truncated = true;
        off += len;
    }
}

// FADT field offsets (ACPI 6.5, table 5.9).
enum : u32 {
    F_FIRMWARE_CTRL = 36, F_DSDT = 40, F_SCI_INT = 46, F_SMI_CMD = 48,
    F_ACPI_ENABLE = 52, F_ACPI_DISABLE = 53, F_PM1A_EVT = 56, F_PM1B_EVT = 60,
    F_PM1A_CNT = 64, F_PM1B_CNT = 68, F_PM_TMR = 76, F_PM1_EVT_LEN = 88,
    F_PM1_CNT_LEN = 89, F_PM_TMR_LEN = 91, F_CENTURY = 108, F_IAPC_BOOT_ARCH = 109,
    F_FLAGS = 112, F_RESET_REG = 116, F_RESET_VALUE = 128, F_X_FIRMWARE_CTRL = 132,
    F_X_DSDT = 140, F_X_PM1A_EVT = 148, F_X_PM1B_EVT = 160, F_X_PM1A_CNT = 172,
    F_X_PM1B_CNT = 184, F_X_PM_TMR = 208, F_SLEEP_CONTROL = 244, F_SLEEP_STATUS = 256,
};

void parse_fadt(Fadt &f, View t, u8 revision)
{
    f.present = true;
    f.revision = revision;
    f.length = t.len;
    f.flags = t.u32_at(F_FLAGS);
    // IAPC_BOOT_ARCH was reserved in ACPI 1.0 (revision 1).
    f.iapc_boot_arch = revision >= 2 ? t.u16_at(F_IAPC_BOOT_ARCH) : 0;
    f.sci_int = t.u16_at(F_SCI_INT);
    f.smi_cmd = t.u32_at(F_SMI_CMD);
    f.acpi_enable = t.u8_at(F_ACPI_ENABLE);
    f.acpi_disable = t.u8_at(F_ACPI_DISABLE);
    f.century = t.u8_at(F_CENTURY);
    f.pm1a_evt_blk = t.u32_at(F_PM1A_EVT);
    f.pm1b_evt_blk = t.u32_at(F_PM1B_EVT);
    f.pm1a_cnt_blk = t.u32_at(F_PM1A_CNT);
    f.pm1b_cnt_blk = t.u32_at(F_PM1B_CNT);
    f.pm_tmr_blk = t.u32_at(F_PM_TMR);
    f.pm1_evt_len = t.u8_at(F_PM1_EVT_LEN);
    f.pm1_cnt_len = t.u8_at(F_PM1_CNT_LEN);
    f.pm_tmr_len = t.u8_at(F_PM_TMR_LEN);

    f.has_reset = (f.flags & Fadt::RESET_REG_SUP) && t.has(F_RESET_REG, 13);
    f.reset_reg = t.gas_at(F_RESET_REG);
    f.reset_value = t.u8_at(F_RESET_VALUE);

    u64 x_dsdt = t.u64_at(F_X_DSDT), x_facs = t.u64_at(F_X_FIRMWARE_CTRL);
    f.dsdt = x_dsdt ? x_dsdt : t.u32_at(F_DSDT);
    f.facs = x_facs ? x_facs : t.u32_at(F_FIRMWARE_CTRL);

    f.x_pm1a_evt_blk = t.gas_at(F_X_PM1A_EVT);
    f.x_pm1b_evt_blk = t.gas_at(F_X_PM1B_EVT);
    f.x_pm1a_cnt_blk = t.gas_at(F_X_PM1A_CNT);
    f.x_pm1b_cnt_blk = t.gas_at(F_X_PM1B_CNT);
    f.x_pm_tmr_blk = t.gas_at(F_X_PM_TMR);
    f.sleep_control = t.gas_at(F_SLEEP_CONTROL);
    f.sleep_status = t.gas_at(F_SLEEP_STATUS);
}

void parse_hpet(Hpet &h, View t)
{
    h.present = true;
    if (!t.has(HDR, 20)) {
        h.err = Err::invalid;
        return;
    }
    h.block_id = t.u32_at(36);
    h.base = t.gas_at(40);
    h.number = t.u8_at(52);
    h.min_tick = t.u16_at(53);
    h.page_protection = t.u8_at(55);
}

void parse_mcfg(Mcfg &m, View t)
{
    m.present = true;
    if (t.len < HDR + 8) {
        m.err = Err::invalid;
        return;
    }
    for (u32 off = HDR + 8; t.has(off, 16); off += 16) {
        const u8 *e = t.p + off;
        McfgEntry ent{load_u64(e), load_u16(e + 8), e[10], e[11]};
        if (ent.start_bus > ent.end_bus) {
            m.err = Err::invalid;
            continue;
        }
        if (!push(m.entries, m.count, ent))
            m.truncated = true;
    }
}

// Map a recorded table for decoding. It was validated during the walk,
// but only the most recent mapping may be used, so map it again.
const u8 *map_table(AcpiMemory &mem, const AcpiTable &t) { return map(mem, t.pa, t.length); }

Gas io_gas(u32 port, u8 len_bytes)
{
    if (!port)
        return Gas{};
    u8 w = static_cast<u8>(len_bytes * 8);
    return Gas{Gas::SYSTEM_IO, w, 0, static_cast<u8>(len_bytes >= 4 ? 3 : len_bytes == 2 ? 2 : 1),
               port};
}

} // namespace

Gas Fadt::pm_timer() const
{
    if (hw_reduced())
        return Gas{};
    if (x_pm_tmr_blk.address)
        return x_pm_tmr_blk;
    return io_gas(pm_tmr_blk, 4);
}

Gas Fadt::pm1a_cnt() const
{
    return x_pm1a_cnt_blk.address ? x_pm1a_cnt_blk : io_gas(pm1a_cnt_blk, pm1_cnt_len >= 2 ? 2 : 1);
}

Gas Fadt::pm1b_cnt() const
{
    return x_pm1b_cnt_blk.address ? x_pm1b_cnt_blk : io_gas(pm1b_cnt_blk, pm1_cnt_len >= 2 ? 2 : 1);
}

const AcpiTable *Acpi::find(const char *sig, usize nth) const
{
    for (usize i = 0; i < table_count; i++)
        if (sig_eq(tables[i].sig, sig) && nth-- == 0)
            return &tables[i];
    return nullptr;
}

Status acpi_parse(AcpiMemory &mem, const u8 *rsdp, usize rsdp_len, Acpi &a)
{
    zero_object(a);
    if (!rsdp || rsdp_len < 20 || !sig_eq(rsdp, "RSD PTR ", 8))
        return Err::invalid;
    if (checksum(rsdp, 20))
        return Err::bad_checksum;

    a.revision = rsdp[15];
    for (int i = 0; i < 6; i++)
        a.oem_id[i] = static_cast<char>(rsdp[9 + i]);
    PhysAddr rsdt(load_u32(rsdp + 16)), xsdt;

    // The v2 fields exist only if the caller has them: GRUB's tag 14 is a
    // 20-byte copy even when the RSDP itself says revision 2.
    if (a.revision >= 2 && rsdp_len >= 36) {
        u32 len = load_u32(rsdp + 20);
        if (len < 36 || len > rsdp_len)
            return Err::invalid;
        if (checksum(rsdp, len))
            return Err::bad_checksum;
        xsdt = PhysAddr(load_u64(rsdp + 24));
    }

    Status s = Err::not_found;
    if (xsdt.raw()) {
        s = walk_root(a, mem, xsdt, true);
        if (!s && rsdt.raw()) {
            // A broken XSDT with a good RSDT is a known firmware bug; the
            // RSDT describes the same tables with 32-bit pointers.
            a.xsdt_err = s.error();
            a.table_count = a.bad_count = 0;
            a.tables_truncated = false;
            s = walk_root(a, mem, rsdt, false);
        }
    } else if (rsdt.raw()) {
        s = walk_root(a, mem, rsdt, false);
    }
    if (!s)
        return s;

    // Decode the tables we understand. The DSDT is not listed in the root,
    // only in the FADT; record it too so that find("DSDT") works.
    if (const AcpiTable *t = a.find("FACP")) {
        if (const u8 *p = map_table(mem, *t)) {
            parse_fadt(a.fadt, View{p, t->length}, p[8]);
            if (a.fadt.dsdt)
                add_table(a, mem, PhysAddr(a.fadt.dsdt));
        }
    }
    if (const AcpiTable *t = a.find("APIC")) {
        if (const u8 *p = map_table(mem, *t)) {
            parse_madt(a.madt, View{p, t->length}, p[8]);
        } else {
            a.madt.present = true;
            a.madt.err = Err::range;
        }
    }
    if (const AcpiTable *t = a.find("HPET")) {
        if (const u8 *p = map_table(mem, *t)) {
            parse_hpet(a.hpet, View{p, t->length});
        } else {
            a.hpet.present = true;
            a.hpet.err = Err::range;
        }
    }
    if (const AcpiTable *t = a.find("MCFG")) {
        if (const u8 *p = map_table(mem, *t)) {
            parse_mcfg(a.mcfg, View{p, t->length});
        } else {
            a.mcfg.present = true;
            a.mcfg.err = Err::range;
        }
    }
    return {};
}

Result<Acpi> acpi_parse(AcpiMemory &mem, const u8 *rsdp, usize rsdp_len)
{
    Acpi a;
    Status s = acpi_parse(mem, rsdp, rsdp_len, a);
    if (!s)
        return s.error();
    return a;
}

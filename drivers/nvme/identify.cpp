// Identify data (NVMe 1.4, 5.15.2, figures 247 and 249).
#include "drivers/nvme/identify.hpp"

#include "drivers/nvme/spec.hpp"
#include "kernel/lib/bytes.hpp"

namespace nvme {

namespace {

// An ASCII field padded with spaces (some controllers pad with NULs): printable
// bytes kept, others shown as '?', trailing padding cut.
void copy_text(char *dst, const u8 *src, usize n)
{
    usize len = 0;
    for (usize i = 0; i < n; i++) {
        const u8 c = src[i] ? src[i] : ' ';
        dst[i] = (c >= 0x20 && c < 0x7f) ? char(c) : '?';
        if (c != ' ') len = i + 1;
    }
    dst[len] = 0;
}

} // namespace

Status parse_identify_controller(const u8 *page, u64 cap, ControllerInfo &out)
{
    out = ControllerInfo{};
    out.vid = load_u16(page + 0);
    copy_text(out.serial, page + 4, 20);
    copy_text(out.model, page + 24, 40);
    copy_text(out.firmware, page + 64, 8);
    out.mdts = page[77];
    out.cntlid = load_u16(page + 78);
    out.version = load_u32(page + 80);
    const u8 sqes = page[512], cqes = page[513];
    out.nn = load_u32(page + 516);
    out.oncs = load_u16(page + 520);
    out.volatile_write_cache = page[525] & 1;
    out.dsm = out.oncs & ONCS_DSM;
    out.write_zeroes = out.oncs & ONCS_WRITE_ZEROES;

    // SQES/CQES: bits 3:0 the required (minimum) size, 7:4 the maximum, log2.
    if ((sqes & 0xf) > SQE_SHIFT || (sqes >> 4) < SQE_SHIFT) return Err::invalid;
    if ((cqes & 0xf) > CQE_SHIFT || (cqes >> 4) < CQE_SHIFT) return Err::invalid;

    // 2^MDTS units of the minimum memory page; shifts past 2^40 are "huge".
    if (out.mdts) {
        const u32 shift = out.mdts + 12 + cap_mpsmin(cap);
        out.max_transfer = shift >= 40 ? u64(1) << 40 : u64(1) << shift;
    }
    return {};
}

Status parse_identify_namespace(const u8 *page, u32 nsid, NamespaceInfo &out)
{
    out = NamespaceInfo{};
    out.nsid = nsid;
    out.blocks = load_u64(page + 0);
    out.capacity = load_u64(page + 8);
    if (!out.blocks) return Err::not_found;
    const u8 nlbaf = page[25];       // 0-based count of formats
    const u8 flbas = page[26];
    out.format = flbas & 0xf;
    if (out.format > nlbaf || out.format > 15) return Err::invalid;
    const u32 lbaf = load_u32(page + 128 + 4u * out.format);
    out.metadata_size = u16(lbaf);
    const u8 lbads = u8(lbaf >> 16);
    if (lbads < 9 || lbads > 16) return Err::invalid;
    out.block_shift = lbads;
    out.block_size = 1u << lbads;
    // The number of blocks must fit the LBA space and the byte count u64.
    if (out.blocks > (~u64(0) >> lbads)) return Err::invalid;
    out.usable = out.metadata_size == 0;
    return {};
}

Result<u32> parse_namespace_list(const u8 *page, u32 *out, u32 max)
{
    u32 n = 0, prev = 0;
    for (; n < MEM_PAGE / 4; n++) {
        const u32 id = load_u32(page + 4 * n);
        if (!id) break;
        if (id <= prev || id == 0xffffffff) return Err::invalid;
        prev = id;
        if (n < max) out[n] = id;
    }
    return n;
}

Status parse_primary_caps(const u8 *page, PrimaryCaps &out)
{
    out = PrimaryCaps{};
    out.cntlid = load_u16(page + 0);
    out.crt = load_u16(page + 4);
    out.vqfrt = load_u32(page + 32);
    out.vqrfa = load_u32(page + 36);
    out.vqrfap = load_u16(page + 40);
    out.vqprt = load_u16(page + 42);
    out.vqfrsm = load_u16(page + 44);
    out.vqgran = load_u16(page + 46);
    out.vifrt = load_u32(page + 64);
    out.virfa = load_u32(page + 68);
    out.virfap = load_u16(page + 72);
    out.viprt = load_u16(page + 74);
    out.vifrsm = load_u16(page + 76);
    out.vigran = load_u16(page + 78);
    // In u64: the sum of two u32s may not fit a u32.
    if (u64(out.vqrfa) + out.vqrfap > out.vqfrt || u64(out.virfa) + out.virfap > out.vifrt) return Err::invalid;
    return {};
}

Result<u32> parse_secondary_list(const u8 *page, SecondaryController *out, u32 max)
{
    const u32 n = page[0];
    if (n > SECONDARY_LIST_MAX) return Err::invalid;
    static_assert(SECONDARY_ENTRY_OFFSET + SECONDARY_LIST_MAX * SECONDARY_ENTRY_BYTES <= MEM_PAGE);
    for (u32 i = 0; i < n && i < max; i++) out[i] = parse_secondary_entry(page, i);
    return n;
}

SecondaryController parse_secondary_entry(const u8 *page, u32 i)
{
    SecondaryController s;
    if (i >= SECONDARY_LIST_MAX) return s;
    const u8 *e = page + SECONDARY_ENTRY_OFFSET + SECONDARY_ENTRY_BYTES * i;
    s.scid = load_u16(e + 0);
    s.pcid = load_u16(e + 2);
    s.online = e[4] & 1;
    s.vfn = load_u16(e + 8);
    s.nvq = load_u16(e + 10);
    s.nvi = load_u16(e + 12);
    return s;
}

} // namespace nvme

// GUID Partition Table (UEFI 2.10, 5.2.3 protective MBR, 5.3.2 header, 5.3.3 entries).
#include "kernel/storage/gpt.hpp"

#include "kernel/lib/bytes.hpp"
#include "kernel/lib/crc32.hpp"
#include "kernel/lib/why.hpp"

namespace gpt {

namespace {

constexpr u32 HEADER_MIN = 92;
constexpr u32 ENTRY_MIN = 128;

struct Header {
    u32 size = 0;
    u64 my_lba = 0;
    u64 first_usable = 0, last_usable = 0;
    Guid disk;
    u64 entries_lba = 0;
    u32 entry_count = 0, entry_size = 0, entries_crc = 0;
};

using Why = WhyMsg<Report>;

// Read and check the header at `lba`; `what` names it in the report.
Status read_header(BlockSource &dev, u8 *b, u64 lba, Header &h, Report *why, const char *what)
{
    const u32 bs = dev.block_size();
    const u64 count = dev.block_count();
    Status s = dev.read(lba, b);
    if (!s) return Why(why, s.error()).s(what).s(" header: read of LBA ").d(lba).s(" failed");
    static const u8 SIG[8] = {'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'};
    for (int i = 0; i < 8; i++)
        if (b[i] != SIG[i]) return Why(why, Err::invalid).s(what).s(" header: no EFI PART signature at LBA ").d(lba);
    const u32 rev = load_u32(b + 8);
    if (rev >> 16 != 1) return Why(why, Err::invalid).s(what).s(" header: revision ").x(rev);
    h.size = load_u32(b + 12);
    if (h.size < HEADER_MIN || h.size > bs) return Why(why, Err::invalid).s(what).s(" header: size ").d(h.size);
    const u32 crc = load_u32(b + 16);
    store_le(b + 16, 0, 4);
    const u32 calc = crc32(b, h.size);
    if (crc != calc) return Why(why, Err::bad_checksum).s(what).s(" header: CRC ").x(crc).s(", computed ").x(calc);
    h.my_lba = load_u64(b + 24);
    h.first_usable = load_u64(b + 40);
    h.last_usable = load_u64(b + 48);
    for (int i = 0; i < 16; i++) h.disk.b[i] = b[56 + i];
    h.entries_lba = load_u64(b + 72);
    h.entry_count = load_u32(b + 80);
    h.entry_size = load_u32(b + 84);
    h.entries_crc = load_u32(b + 88);

    if (h.my_lba != lba) return Why(why, Err::invalid).s(what).s(" header: MyLBA ").d(h.my_lba).s(" read at ").d(lba);
    // The usable range holds neither MBR nor header: [2, count - 2].
    if (h.first_usable < 2 || h.first_usable > h.last_usable || h.last_usable > count - 2)
        return Why(why, Err::invalid).s(what).s(" header: usable LBAs ").d(h.first_usable).s("..").d(h.last_usable)
            .s(" on a disk of ").d(count);
    if (h.entry_size < ENTRY_MIN || !is_pow2(h.entry_size) || h.entry_size > bs)
        return Why(why, Err::invalid).s(what).s(" header: entry size ").d(h.entry_size);
    if (h.entry_count < 1 || h.entry_count > MAX_ENTRIES)
        return Why(why, Err::invalid).s(what).s(" header: ").d(h.entry_count).s(" entries");
    const u64 blocks = (u64(h.entry_count) * h.entry_size + bs - 1) / bs;
    const u64 first = h.entries_lba;
    if (first < 2 || first > count - 1 || blocks > count - 1 - first ||
        !(first + blocks <= h.first_usable || first > h.last_usable) || (lba >= first && lba < first + blocks))
        return Why(why, Err::invalid).s(what).s(" header: entry array at LBA ").d(first).s(" (").d(blocks)
            .s(" blocks) overlaps the usable range, a header or the disk's end");
    return {};
}

// Read the entry array of `h` into `out`; then check its CRC, and only then
// (so a corrupted array is reported as such) each entry.
Status read_entries(BlockSource &dev, u8 *b, const Header &h, Table &out, Report *why, const char *what)
{
    const u32 bs = dev.block_size();
    const u32 per_block = bs / h.entry_size;
    u64 left = u64(h.entry_count) * h.entry_size;
    u32 crc = 0, slot = 0;
    bool too_many = false;
    for (u64 lba = h.entries_lba; left; lba++) {
        Status s = dev.read(lba, b);
        if (!s) return Why(why, s.error()).s(what).s(" entries: read of LBA ").d(lba).s(" failed");
        const u32 here = left < bs ? u32(left) : bs;
        crc = crc32(b, here, crc);
        left -= here;
        for (u32 k = 0; k < per_block && k * h.entry_size < here; k++, slot++) {
            const u8 *e = b + k * h.entry_size;
            Partition p;
            for (int i = 0; i < 16; i++) {
                p.type.b[i] = e[i];
                p.unique.b[i] = e[16 + i];
            }
            if (p.type.zero()) continue;
            p.index = slot + 1;
            p.first_lba = load_u64(e + 32);
            p.last_lba = load_u64(e + 40);
            p.attributes = load_u64(e + 48);
            for (u32 i = 0; i < NAME_UNITS; i++) p.name[i] = load_u16(e + 56 + 2 * i);
            if (out.n == MAX_PARTITIONS) too_many = true;
            else out.part[out.n++] = p;
        }
    }
    if (crc != h.entries_crc)
        return Why(why, Err::bad_checksum).s(what).s(" entries: CRC ").x(h.entries_crc).s(", computed ").x(crc);
    if (too_many)
        return Why(why, Err::unsupported).s(what).s(" entries: more than ").d(MAX_PARTITIONS).s(" partitions");
    for (u32 i = 0; i < out.n; i++) {
        const Partition &p = out.part[i];
        if (p.first_lba > p.last_lba || p.first_lba < h.first_usable || p.last_lba > h.last_usable)
            return Why(why, Err::invalid).s(what).s(" entries: partition ").d(p.index).s(" LBAs ").d(p.first_lba)
                .s("..").d(p.last_lba).s(" outside the usable ").d(h.first_usable).s("..").d(h.last_usable);
    }
    for (u32 i = 0; i < out.n; i++)
        for (u32 j = i + 1; j < out.n; j++) {
            const Partition &a = out.part[i], &c = out.part[j];
            if (a.first_lba <= c.last_lba && c.first_lba <= a.last_lba)
                return Why(why, Err::invalid).s(what).s(" entries: partitions ").d(a.index).s(" and ").d(c.index)
                    .s(" overlap");
        }
    return {};
}

Status read_table(BlockSource &dev, u8 *b, u64 lba, Table &out, Report *why, const char *what)
{
    zero_object(out);
    Header h;
    KEEL_TRY(read_header(dev, b, lba, h, why, what));
    out.disk = h.disk;
    out.first_usable = h.first_usable;
    out.last_usable = h.last_usable;
    out.entry_count = h.entry_count;
    out.entry_size = h.entry_size;
    Status s = read_entries(dev, b, h, out, why, what);
    if (!s) zero_object(out);
    return s;
}

bool protective_mbr(const u8 *b)
{
    if (b[510] != 0x55 || b[511] != 0xaa) return false;
    for (int i = 0; i < 4; i++)
        if (b[446 + 16 * i + 4] == 0xee) return true;
    return false;
}

// The stored name is exactly `name` (code unit for byte), then NUL or the field's end.
bool name_is(const Partition &p, StrView name)
{
    for (u32 k = 0; k < NAME_UNITS; k++) {
        const u16 want = k < name.n ? u8(name.p[k]) : 0;
        if (p.name[k] != want) return false;
        if (k >= name.n) return true;
    }
    return true;
}

} // namespace

void Partition::name_ascii(char *out) const
{
    u32 i = 0;
    for (; i < NAME_UNITS && name[i]; i++) out[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? char(name[i]) : '?';
    out[i] = 0;
}

Status parse(BlockSource &dev, u8 *scratch, Table &out, Report *why)
{
    zero_object(out);
    if (why) why->msg[0] = 0;
    const u32 bs = dev.block_size();
    const u64 count = dev.block_count();
    if (bs < MIN_BLOCK || bs > MAX_BLOCK || !is_pow2(bs))
        return Why(why, Err::unsupported).s("block size ").d(bs);
    if (count < 6) return Why(why, Err::invalid).s("disk of ").d(count).s(" blocks: too small for a GPT");
    Status s = dev.read(0, scratch);
    if (!s) return Why(why, s.error()).s("read of LBA 0 failed");
    if (!protective_mbr(scratch)) return Why(why, Err::invalid).s("no protective MBR (type 0xee) at LBA 0");

    Report first{};
    Status p = read_table(dev, scratch, 1, out, &first, "primary");
    if (p) return {};
    Report second{};
    Status b = read_table(dev, scratch, count - 1, out, &second, "backup");
    if (b) {
        out.used_backup = true;
        Why(why, Err::none).s(first.msg).s("; using the backup");
        return {};
    }
    // Both bad: the primary's reason first (it is the one a tool wrote last).
    const Err e = p.error() == Err::bad_checksum && b.error() == Err::bad_checksum ? Err::bad_checksum
                  : p.error() == Err::unsupported                                   ? Err::unsupported
                                                                                    : Err::invalid;
    return Why(why, e).s(first.msg).s("; ").s(second.msg);
}

Result<const Partition *> by_index(const Table &t, u32 index)
{
    for (u32 i = 0; i < t.n; i++)
        if (t.part[i].index == index) return &t.part[i];
    return Err::not_found;
}

Result<const Partition *> by_name(const Table &t, StrView name)
{
    if (name.empty() || name.n > NAME_UNITS) return Err::not_found;
    const Partition *found = nullptr;
    for (u32 i = 0; i < t.n; i++) {
        if (!name_is(t.part[i], name)) continue;
        if (found) return Err::exists;
        found = &t.part[i];
    }
    if (!found) return Err::not_found;
    return found;
}

Result<const Partition *> by_guid(const Table &t, const Guid &g)
{
    const Partition *found = nullptr;
    for (u32 i = 0; i < t.n; i++) {
        if (!(t.part[i].unique == g)) continue;
        if (found) return Err::exists;
        found = &t.part[i];
    }
    if (!found) return Err::not_found;
    return found;
}

} // namespace gpt

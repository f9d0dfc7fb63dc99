// libFuzzer target for the GPT parser and the device names (kernel/storage).
// The input's first byte chooses the block size (bit 0: 4096, else 512) and
// whether the harness re-seals the CRCs of both headers and their entry arrays
// after the mutation (bit 1), so mutations get past the CRCs to the checks
// behind them; the rest is the disk, zero-padded to whole blocks. The same
// bytes are also parsed as a device name. Invariants (a trap otherwise):
//  - the parser reads only blocks on the disk, and only through the callback;
//  - on success: a sane usable range, at most MAX_PARTITIONS partitions by
//    increasing slot within the entry count, each inside the usable range,
//    none overlapping; every lookup finds what it should;
//  - on failure nothing is left in the table; the report is a NUL-terminated line;
//  - a parsed device name obeys its form; a GUID formats and parses back to itself.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "kernel/lib/bytes.hpp"
#include "kernel/lib/crc32.hpp"
#include "kernel/storage/device_name.hpp"
#include "kernel/storage/gpt.hpp"
#include "tests/fuzz/guarded.hpp"

namespace {

using fuzz::check;

struct Disk final : gpt::BlockSource {
    std::vector<u8> d;
    u32 bs = 512;
    u64 count = 0;

    u32 block_size() const override { return bs; }
    u64 block_count() const override { return count; }
    Status read(u64 lba, u8 *dst) override
    {
        check(lba < count);
        memcpy(dst, d.data() + lba * bs, bs);
        return {};
    }
};

// Recompute the CRCs of the header at `lba` and of the array it names (when on the disk).
void reseal(Disk &k, u64 lba)
{
    u8 *h = k.d.data() + lba * k.bs;
    if (memcmp(h, "EFI PART", 8) != 0) return;
    const u64 array = load_u64(h + 72);
    const u64 bytes = u64(load_u32(h + 80)) * load_u32(h + 84);
    if (array < k.count && bytes <= (k.count - array) * k.bs)
        store_le(h + 88, crc32(k.d.data() + array * k.bs, bytes), 4);
    u32 size = load_u32(h + 12);
    if (size > k.bs) size = k.bs;
    store_le(h + 16, 0, 4);
    store_le(h + 16, crc32(h, size), 4);
}

void check_table(Disk &k, const gpt::Table &t)
{
    check(t.first_usable >= 2 && t.first_usable <= t.last_usable && t.last_usable <= k.count - 2);
    check(t.entry_count >= 1 && t.entry_count <= gpt::MAX_ENTRIES);
    check(t.entry_size >= 128 && t.entry_size <= k.bs);
    check(t.n <= gpt::MAX_PARTITIONS);
    for (u32 i = 0; i < t.n; i++) {
        const gpt::Partition &p = t.part[i];
        check(p.index >= 1 && p.index <= t.entry_count);
        if (i) check(p.index > t.part[i - 1].index);
        check(p.first_lba <= p.last_lba && p.first_lba >= t.first_usable && p.last_lba <= t.last_usable);
        check(!p.type.zero());
        for (u32 j = 0; j < i; j++) check(p.last_lba < t.part[j].first_lba || p.first_lba > t.part[j].last_lba);
        auto r = gpt::by_index(t, p.index);
        check(r.ok() && *r == &p);
        auto g = gpt::by_guid(t, p.unique);
        check(g.error() == Err::exists || (g.ok() && *g == &p));
        char name[gpt::NAME_UNITS + 1];
        p.name_ascii(name);
        auto n = gpt::by_name(t, StrView{name, strlen(name)});
        // A name with non-ASCII units reads differently in ASCII; one that does
        // not must find this partition or report several.
        bool ascii = true;
        for (u32 c = 0; c < gpt::NAME_UNITS && p.name[c]; c++) ascii = ascii && p.name[c] >= 0x20 && p.name[c] < 0x7f;
        if (ascii && name[0]) check(n.error() == Err::exists || (n.ok() && *n == &p));
    }
}

void check_device_name(const uint8_t *data, size_t size)
{
    std::vector<char> text(data, data + size);
    DeviceName d;
    const char *why = parse_device_name(StrView{text.data(), text.size()}, d);
    if (why) {
        check(why[0] != 0);
        return;
    }
    switch (d.kind) {
    case DeviceKind::nvme_namespace:
        check(d.controller <= 255 && d.nsid >= 1 && d.nsid != 0xffffffff && d.partition == 0);
        break;
    case DeviceKind::nvme_partition:
        check(d.nsid >= 1 && d.partition >= 1 && d.partition <= gpt::MAX_ENTRIES);
        break;
    case DeviceKind::gpt_name:
        check(d.name.n >= 1 && d.name.n <= gpt::NAME_UNITS);
        check(d.name.p >= text.data() && d.name.p + d.name.n == text.data() + text.size());
        break;
    case DeviceKind::gpt_guid: {
        check(!d.guid.zero());
        char g[GUID_TEXT + 1];
        format_guid(d.guid, g);
        Guid back;
        check(parse_guid(StrView{g, GUID_TEXT}, back) && back == d.guid);
        break;
    }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_device_name(data, size);
    if (size < 2) return 0;
    Disk k;
    k.bs = (data[0] & 1) ? 4096 : 512;
    k.count = (size - 1 + k.bs - 1) / k.bs;
    k.d.assign(k.count * k.bs, 0);
    memcpy(k.d.data(), data + 1, size - 1);
    if ((data[0] & 2) && k.count >= 2) {
        reseal(k, 1);
        reseal(k, k.count - 1);
    }

    std::vector<u8> scratch(k.bs);
    static gpt::Table t;   // 17 KiB: not on libFuzzer's stack
    gpt::Report why;
    memset(why.msg, 'x', sizeof why.msg);
    Status s = gpt::parse(k, scratch.data(), t, &why);
    check(memchr(why.msg, 0, sizeof why.msg) != nullptr);
    if (s.ok()) check_table(k, t);
    else check(t.n == 0);
    return 0;
}
